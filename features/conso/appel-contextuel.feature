# language: fr
Fonctionnalité: DRIMbox Conso — appel contextuel depuis le RIS, le DPI ou le LPS
  Le RIS ouvre la DRIMbox Conso sur le dossier d'un patient par un POST application/x-www-form-urlencoded
  (paramètres Patient.identifier.value, Patient.identifier.system… du PoC ANS et du serveur de test
  ANS de l'appel contextuel, drimbox-spec §5.1). Un paramètre inconnu, une valeur vide ou un paramètre
  obligatoire absent est refusé en HTTP 400 (les noms de paramètres sont comparés à l'identique : un nom
  écrit dans une autre casse ou prolongé d'un suffixe est un paramètre inconnu) ; un appel complet redirige le navigateur (302 ou 303)
  vers l'interface de la DRIMbox. Chaque appel reçu donne une ligne d'indicateur « ModelStat »
  (FAQ ANS), relevée par [hooks] kpi pour une DRIMbox externe.

  @req:CON-01
  Scénario: Un appel contextuel complet est redirigé vers l'interface de la DRIMbox
    Quand le RIS envoie un appel contextuel complet
    Alors la DRIMbox redirige le navigateur vers son interface (302 ou 303)

  @req:CON-01
  Plan du scénario: Un appel contextuel incomplet ou mal formé est refusé
    Quand le RIS envoie un appel contextuel mal formé : <défaut>
    Alors la DRIMbox le refuse en HTTP 400

    Exemples:
      | défaut                        |
      | sans Patient.identifier.value |
      | sans consentement             |
      | avec un paramètre inconnu     |
      | avec une valeur vide          |
      | avec Patient.identifier.value écrit en minuscules |
      | avec un suffixe au nom Patient.identifier.value   |

  @req:CON-06
  Scénario: Une ligne d'indicateur ModelStat par appel contextuel reçu
    Étant donné drimcheck a relevé les indicateurs ModelStat de la DRIMbox
    Quand le RIS envoie un appel contextuel complet puis un appel sans Patient.identifier.value
    Alors une ligne ModelStat est ajoutée par appel, avec le statut de l'appel
