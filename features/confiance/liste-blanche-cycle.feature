# language: fr
Fonctionnalité: Liste blanche — téléchargement au démarrage puis chaque jour
  Chaque DRIMbox télécharge la liste blanche publiée par l'ANS à son démarrage puis quotidiennement,
  et en vérifie la signature à chaque téléchargement (guide d'intégration à l'Espace de Confiance
  §2.3, exigences DB0 §4.11). drimcheck joue le point de publication de l'ANS et déclenche la mise à
  jour quotidienne (hook refresh_whitelist, ou déclencheur intégré de la DRIMbox de référence).

  @req:WL-01
  Scénario: Téléchargement au démarrage puis à chaque mise à jour quotidienne
    Alors la DRIMbox a téléchargé la liste blanche à son démarrage
    Quand la mise à jour quotidienne de la liste blanche est déclenchée
    Alors la DRIMbox télécharge à nouveau la liste blanche
