# language: fr
Fonctionnalité: DRIMbox Source — seules les DRIMbox de la liste blanche sont servies, en mTLS
  Une DRIMbox Source ne sert ses images qu'aux DRIMbox dont le certificat client SERV_SSL de
  l'IGC-Santé est valide, non révoqué, et dont le DN figure dans un DNCertificatOperateur de la liste
  blanche valide en vigueur (guide d'intégration §2.3 et §2.5 ; drimbox-spec §2.2 et §5.3).
  drimcheck joue des DRIMbox Conso pairs qui demandent une série en WADO-RS. Le statut de révocation
  n'est pas mémorisé par certificat : un certificat accepté puis révoqué est refusé dès que la DRIMbox
  dispose d'une CRL qui le révoque (RFC 5280 §6.3 ; une CRL encore valide peut servir jusqu'à son
  nextUpdate, ce qui n'est alors pas jugé).

  Contexte:
    Étant donné le PACS simulé détient une étude de test
    Et la liste blanche nominale est en vigueur sur la DRIMbox

  @req:WL-05
  Scénario: Une DRIMbox listée est servie en mTLS
    Quand la DRIMbox pair « listée » demande une série de l'étude
    Alors la série lui est servie

  @req:WL-05
  Plan du scénario: Une DRIMbox hors de la liste blanche n'est pas servie
    Quand la DRIMbox pair « <pair> » demande une série de l'étude
    Alors rien ne lui est servi

    Exemples:
      | pair                             |
      | absente de la liste              |
      | au CN listé mais au DN différent |
      | sans certificat client           |
      | au CN listé précédé d'un préfixe   |
      | au CN listé suivi d'un point final |
      | au DN listé augmenté d'un attribut |

  @req:WL-05
  Scénario: Une DRIMbox retirée de la liste n'est plus servie après la mise à jour, bien que son certificat soit valide
    Étant donné la DRIMbox pair « retirée » est servie
    Quand le point de publication ANS sert la liste « retrait »
    Et la DRIMbox met à jour sa liste blanche
    Alors la DRIMbox pair « retirée » n'est plus servie

  @req:MTLS-01
  Plan du scénario: Un certificat client non valide est refusé même si son DN est listé
    Quand une DRIMbox pair présente un certificat client « <défaut> » et demande une série de l'étude
    Alors rien ne lui est servi

    Exemples:
      | défaut            |
      | expiré            |
      | pas encore valide |
      | d'une autre AC    |
      | révoqué           |

  @req:MTLS-01
  Scénario: Un certificat client révoqué après un premier accès accepté est refusé dès que la DRIMbox a la CRL qui le révoque
    Étant donné une DRIMbox pair au DN listé a été servie avec un certificat client valide
    Quand l'IGC-Santé révoque ce certificat client
    Et la DRIMbox met à jour sa liste blanche
    Et cette DRIMbox pair demande de nouveau une série de l'étude
    Alors rien ne lui est servi dès lors que la DRIMbox a téléchargé une CRL qui révoque son certificat
