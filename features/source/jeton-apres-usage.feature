# language: fr
Fonctionnalité: DRIMbox Source — un jeton Pro Santé Connect est vérifié à chaque requête, pas seulement au premier usage
  La Source ne sert ses images qu'avec un jeton PSC actif, vérifié par introspection (guide d'intégration,
  « Introspection » ; RFC 7662 §2.2). Un jeton accepté une première fois peut ensuite être révoqué ou perdre
  sa session PSC : la Source qui mémorise qu'il était actif continue de servir un praticien déconnecté.
  drimcheck joue la DRIMbox Conso listée : le même jeton, accepté, puis invalidé auprès de PSC, est présenté
  de nouveau.

  Contexte:
    Étant donné la liste blanche nominale est en vigueur sur la DRIMbox
    Et la DRIMbox a publié au DMP les KOS de deux études de son PACS

  @req:PSC-01
  Plan du scénario: Un jeton Pro Santé Connect accepté puis invalidé n'est plus accepté
    Étant donné la DRIMbox pair listée a été servie avec un jeton Pro Santé Connect neuf
    Quand Pro Santé Connect <invalidation> ce jeton
    Et la DRIMbox pair listée demande de nouveau la série avec ce jeton
    Alors la DRIMbox refuse ce jeton (HTTP 401) alors qu'elle l'avait accepté

    Exemples:
      | invalidation          |
      | révoque               |
      | termine la session de |
