# language: fr
Fonctionnalité: Liste blanche — signature XAdES vérifiée à chaque téléchargement
  La liste blanche est signée par l'ANS (XAdES Baseline-B enveloppée, certificat ORG SIGN
  « CN=Liste Blanche DRIM-M, OU=318751275100020 » de l'IGC-Santé). Une liste non signée, altérée,
  enveloppée ou signée par un autre certificat ne doit jamais être appliquée : chaque liste refusée
  ajoute une DRIMbox pair (db903) qui ne doit donc pas être servie, et la DRIMbox pair listée
  auparavant (db901) doit toujours l'être (ANS, liste blanche TEST « corrompue » ; drimbox-spec §2.4).

  Contexte:
    Étant donné le PACS simulé détient une étude de test
    Et la liste blanche nominale est en vigueur sur la DRIMbox

  @req:WL-02 @req:WL-04
  Plan du scénario: Liste à la signature invalide ou au contenu non signé refusée, la liste précédente reste en vigueur
    Étant donné la DRIMbox sert la DRIMbox pair « listée » mais pas la DRIMbox pair « absente de la liste »
    Quand le point de publication ANS sert la liste « <liste> »
    Et la DRIMbox met à jour sa liste blanche
    Alors la DRIMbox pair que seule cette liste ajoute n'est pas servie
    Et la DRIMbox pair listée auparavant est toujours servie

    # non-signee : la liste « corrompue » (WL-2) ; contenu-altere : un chiffre de <db> et du DN changé (WL-3) ;
    # espace-modifie : un espace du DN changé ; proprietes-alterees : SigningTime modifié (WL-4) ;
    # proprietes-non-signees : XMLDSig sans SignedProperties ; enveloppe-* et identifiants-dupliques :
    # enveloppement de signature ; commentaire : liste valide, un commentaire coupe un DN non listé en deux.
    Exemples:
      | liste                  |
      | non-signee             |
      | contenu-altere         |
      | espace-modifie         |
      | proprietes-alterees    |
      | proprietes-non-signees |
      | enveloppe-injectee     |
      | enveloppe-deplacee     |
      | identifiants-dupliques |
      | commentaire            |

  @req:WL-03 @req:WL-04
  Plan du scénario: Liste signée par un certificat non conforme refusée, la liste précédente reste en vigueur
    Étant donné la DRIMbox sert la DRIMbox pair « listée » mais pas la DRIMbox pair « absente de la liste »
    Quand le point de publication ANS sert la liste « <liste> »
    Et la DRIMbox met à jour sa liste blanche
    Alors la DRIMbox pair que seule cette liste ajoute n'est pas servie
    Et la DRIMbox pair listée auparavant est toujours servie

    # CN ou OU inattendus, même AC (WL-5) ; AC imitant l'IGC-Santé (WL-6) ; signataire expiré (WL-7),
    # pas encore valide ; signataire révoqué dans la CRL de l'IGC-Santé (WL-8).
    Exemples:
      | liste                        |
      | signataire-cn                |
      | signataire-cn-suffixe        |
      | signataire-ou                |
      | signataire-autre-ac          |
      | signataire-expire            |
      | signataire-pas-encore-valide |
      | signataire-revoque           |

  @req:WL-09 @req:WL-04
  Plan du scénario: Liste dont la révocation du signataire ne peut être établie refusée, la liste précédente reste en vigueur
    Étant donné la DRIMbox sert la DRIMbox pair « listée » mais pas la DRIMbox pair « absente de la liste »
    Quand le point de publication ANS sert la liste « <liste> »
    Et la DRIMbox met à jour sa liste blanche
    Alors la DRIMbox pair que seule cette liste ajoute n'est pas servie
    Et la DRIMbox pair listée auparavant est toujours servie
    # WL-9 : le signataire (bon DN) est émis par une autre AC intermédiaire de l'IGC-Santé, dont aucune CRL
    # valide n'est jamais publiée : son point de distribution répond 503, ou sert une CRL périmée. Sans CRL
    # valide, la révocation est inconnue et la liste n'est pas valide (règles eSignSanté de l'ANS).
    Exemples:
      | liste           |
      | crl-injoignable |
      | crl-perimee     |
