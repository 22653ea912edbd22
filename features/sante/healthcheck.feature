# language: fr
Fonctionnalité: HealthCheck de la DRIMbox sondé par la Météo des DRIMbox
  La Météo des DRIMbox (status.drimm.esante.gouv.fr, outil Better Uptime) sonde périodiquement le
  HealthCheck de chaque DRIMbox et informe en temps réel de la disponibilité des DRIMbox et de
  leurs PACS (guide d'intégration à l'Espace de Confiance, §2.4). Chaque panne compte : deux PACS
  arrêtés en même temps sont nommés tous les deux, et un PACS arrêté de nouveau après son redémarrage
  est signalé comme la première fois.

  Contexte:
    Étant donné le PACS simulé détient une étude de test

  @req:HLT-01 @req:HLT-04 @req:HLT-06
  Scénario: Statut UP lorsque la DRIMbox et son PACS sont opérationnels
    Quand la Météo interroge le HealthCheck
    Alors chaque réponse indique le statut UP
    Et la réponse suit le format MicroProfile Health
    Et chaque réponse arrive dans le délai imparti

  @req:HLT-01 @req:HLT-06
  Scénario: Disponibilité mesurée par des sondages périodiques de la Météo
    Quand la Météo sonde le HealthCheck 6 fois toutes les 0,25 s
    Alors chaque réponse indique le statut UP
    Et chaque réponse arrive dans le délai imparti

  @req:HLT-02 @req:HLT-03 @req:HLT-04 @req:HLT-05 @req:HLT-06
  Plan du scénario: Arrêt puis redémarrage de chaque PACS d'une DRIMbox mutualisée
    Étant donné la Météo sonde le HealthCheck en continu toutes les 0,5 s
    Quand le <rang> PACS de la DRIMbox est arrêté
    Alors le HealthCheck passe DOWN en nommant ce PACS dans le délai imparti
    Quand ce PACS redémarre
    Alors le HealthCheck redevient UP dans le délai imparti
    Et toutes les réponses observées suivent le format MicroProfile Health
    Et aucune réponse observée ne contient de donnée patient
    Et chaque réponse observée, PACS arrêté compris, arrive dans le délai imparti

    Exemples:
      | rang    |
      | premier |
      | dernier |

  @req:HLT-02 @req:HLT-03
  Scénario: Deux PACS arrêtés en même temps, puis un nouvel arrêt après leur redémarrage
    Étant donné la DRIMbox est mutualisée entre au moins deux PACS
    Et la Météo sonde le HealthCheck en continu toutes les 0,25 s
    Quand le premier PACS de la DRIMbox est arrêté
    Et le dernier PACS de la DRIMbox est arrêté à son tour
    Alors le HealthCheck passe DOWN en nommant chacun des PACS arrêtés dans le délai imparti
    Quand ces PACS redémarrent
    Alors le HealthCheck redevient UP dans le délai imparti
    Quand le premier PACS de la DRIMbox est de nouveau arrêté
    Alors le HealthCheck passe de nouveau DOWN en nommant ce PACS dans le délai imparti

  @req:HLT-05
  Scénario: Aucune donnée patient dans le HealthCheck
    Quand la Météo interroge le HealthCheck
    Alors la réponse ne contient aucun identifiant ni trait du patient de l'étude de test
