# language: fr
Fonctionnalité: Liste blanche — pannes de téléchargement, analyse XML sûre, variantes de format
  Un échec de téléchargement ou une liste refusée laisse en vigueur la dernière liste valide et se voit
  dans le HealthCheck (drimbox-spec §2.4, WL-10). L'analyse XML de la liste ne résout aucune entité
  externe et résiste à l'expansion d'entités. Le format de liste n'a pas de schéma publié : la variante
  2024 de l'ANS, signée valablement, est acceptée (WL-11).

  Contexte:
    Étant donné le PACS simulé détient une étude de test
    Et la liste blanche nominale est en vigueur sur la DRIMbox

  @req:WL-04
  Plan du scénario: Échec du téléchargement : la liste précédente reste en vigueur
    Étant donné la DRIMbox sert la DRIMbox pair « listée » mais pas la DRIMbox pair « absente de la liste »
    Quand le point de publication ANS répond « <panne> »
    Et la DRIMbox met à jour sa liste blanche
    Alors la DRIMbox pair listée auparavant est toujours servie

    Exemples:
      | panne         |
      | http-404      |
      | http-500      |
      | tronquee      |
      | delai-depasse |

  @req:WL-04 @req:HLT-01
  Scénario: L'échec du téléchargement de la liste blanche se voit dans le HealthCheck, jusqu'au téléchargement suivant réussi
    Quand le point de publication ANS répond « http-404 »
    Et la DRIMbox met à jour sa liste blanche
    Alors le HealthCheck signale l'échec de la mise à jour de la liste blanche
    Quand le point de publication ANS sert la liste « nominale »
    Et la DRIMbox met à jour sa liste blanche
    Alors le HealthCheck indique de nouveau le statut UP

  @req:WL-07
  Scénario: Les entités externes d'une DTD ne sont jamais résolues (XXE)
    Quand le point de publication ANS sert la liste « doctype-xxe »
    Et la DRIMbox met à jour sa liste blanche
    Alors la DRIMbox n'a résolu aucune entité externe

  @req:WL-07
  Scénario: Une liste à expansion d'entités ne rend pas la DRIMbox indisponible
    Quand le point de publication ANS sert la liste « expansion-entites »
    Et la DRIMbox met à jour sa liste blanche
    Alors la DRIMbox répond toujours à ses pairs

  @req:WL-08
  Scénario: Une liste signée au format 2024 est acceptée
    Étant donné la DRIMbox sert la DRIMbox pair « listée » mais pas la DRIMbox pair « ajoutée »
    Quand le point de publication ANS sert la liste « format-2024 »
    Et la DRIMbox met à jour sa liste blanche
    Alors la DRIMbox pair ajoutée par cette liste est servie
