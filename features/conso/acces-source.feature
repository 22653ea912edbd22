# language: fr
Fonctionnalité: DRIMbox Source — images servies seulement avec un jeton PSC actif et le KOS qui les référence
  Une DRIMbox Source ne sert ses images en WADO-RS qu'à une DRIMbox listée (mTLS, voir
  mtls-source.feature) qui présente un jeton Pro Santé Connect actif, vérifié par introspection, et
  l'en-tête KOS-SOPInstanceUID d'un KOS publié par la Source qui référence l'objet demandé, avec un
  en-tête Accept lisible (drimbox-spec §5.3, codes d'erreur du PoC ANS ; DICOM PS3.18 §8.7 pour la
  négociation de contenu : un Accept sans transfer-syntax, q ni boundary est valide et vaut Explicit VR
  Little Endian). drimcheck joue la DRIMbox Conso listée ; chaque refus n'est jugé que si la même
  requête, correcte, est servie.

  Contexte:
    Étant donné la liste blanche nominale est en vigueur sur la DRIMbox
    Et la DRIMbox a publié au DMP les KOS de deux études de son PACS
    Et la DRIMbox sert une série à une DRIMbox pair listée munie d'un jeton PSC valide et du KOS

  @req:PSC-01
  Plan du scénario: Sans jeton Pro Santé Connect actif, rien n'est servi
    Quand la DRIMbox pair listée demande la série <jeton>
    Alors la DRIMbox refuse le jeton (HTTP 401)

    Exemples:
      | jeton                                          |
      | sans jeton                                     |
      | avec un jeton expiré                           |
      | avec un jeton révoqué                          |
      | avec un jeton dont la session PSC est terminée |
      | avec une chaîne qui n'est pas un jeton PSC     |

  @req:WADO-01
  Plan du scénario: Une requête WADO-RS non conforme est refusée
    Quand la DRIMbox pair listée demande la série <défaut>
    Alors la DRIMbox refuse la requête en HTTP <statut>

    Exemples:
      | défaut                           | statut |
      | sans en-tête KOS-SOPInstanceUID  | 400    |
      | avec un en-tête Accept mal formé | 400    |
      | avec le KOS d'une autre étude    | 404    |

  @req:WADO-01
  Scénario: Une instance référencée par le KOS mais disparue du PACS est signalée 410
    Étant donné une instance référencée par le KOS de la seconde étude a disparu du PACS
    Quand la DRIMbox pair listée demande cette instance
    Alors la DRIMbox refuse la requête en HTTP 410

  @req:WADO-02
  Plan du scénario: Les images sont servies dans une syntaxe de transfert acceptée par la requête, et déclarée
    Quand la DRIMbox pair listée demande une série en acceptant <syntaxes>
    Alors la DRIMbox sert la série dans une syntaxe acceptée qu'elle déclare, ou répond HTTP 406 si aucune n'est disponible

    Exemples:
      | syntaxes                                                             |
      | seulement JPEG Lossless SV1 (1.2.840.10008.1.2.4.70)                 |
      | seulement JPEG-LS Lossless (1.2.840.10008.1.2.4.80)                  |
      | seulement Explicit VR Little Endian (1.2.840.10008.1.2.1)            |
      | sans syntaxe de transfert, comme un client DICOMweb standard         |
      | toute syntaxe (transfer-syntax=*), comme un client DICOMweb standard |
