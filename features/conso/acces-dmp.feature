# language: fr
Fonctionnalité: DRIMbox Conso — dossier DMP absent, fermé ou interdit au praticien
  Avant de chercher les documents d'un patient, la DRIMbox Conso demande au DMP si le dossier existe
  et si le praticien y a accès (TD0.2 : PRPA_IN201307UV02, reasonCode TEST_EXST, service patients,
  comme le PoC ANS). Quand le DMP répond que le dossier n'existe pas, qu'il est fermé ou que l'accès
  est interdit, la DRIMbox ne cherche aucun document, ne récupère aucun KOS, ne demande aucune image et
  répond au praticien. drimcheck joue le DMP (la forme de sa réponse TD0.2 est déduite du PoC : aucun
  exemple de réponse n'est public) ; le DMP simulé refuse aussi ITI-18 et ITI-43 pour ces dossiers,
  comme le DMP réel.

  @req:CON-08
  Plan du scénario: Dossier DMP absent, fermé ou interdit : aucune recherche de documents ni demande d'images
    Étant donné le DMP répond pour un autre patient que son dossier est « <etat> »
    Quand un praticien ouvre le dossier de cet autre patient depuis le RIS par appel contextuel
    Alors la DRIMbox a testé le dossier au DMP puis n'y a cherché aucun document ni demandé aucune image

    Exemples:
      | etat       |
      | inexistant |
      | fermé      |
      | interdit   |
