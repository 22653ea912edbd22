# language: fr
Fonctionnalité: DRIMbox mutualisée entre plusieurs PACS
  Une DRIMbox peut servir plusieurs PACS ; chacun a son couple de FQDN fixes dbN/viN attribué par l'ANS
  (guide d'intégration §2.2, cas complexe). Chaque examen doit être publié avec le couple du PACS qui
  le détient, sans quoi le KOS désigne une DRIMbox qui ne sait pas servir ses images, et la Source doit
  servir chaque série depuis le PACS du dbN sur lequel elle est demandée (une réponse 410 ou 404 pour une
  série que le KOS référence et que ce PACS détient est un refus à tort).

  @req:SRC-08 @req:FQDN-01 @req:WL-05 @req:WADO-01
  Scénario: Une étude par PACS, chacune publiée avec le FQDN de son PACS
    Étant donné la DRIMbox est mutualisée entre au moins deux PACS
    Et chaque PACS de la DRIMbox détient une étude
    Quand le RIS envoie le CR validé de chaque étude en ORU^R01
    Alors chaque étude est publiée avec le FQDN dbN du PACS qui la détient
    Et chaque RetrieveURL de chaque KOS est sur le FQDN dbN de son PACS
    Et chaque RetrieveURL de chaque KOS, suivie comme le ferait une DRIMbox Conso, sert sa série à une DRIMbox listée et rien à une DRIMbox absente de la liste
    Et aucune de ces requêtes de la DRIMbox listée n'est refusée en 400, 404 ou 410 : le KOS référence chaque série et le PACS qui la détient est celui du dbN de l'URL
