# language: fr
Fonctionnalité: Suites de mises à jour d'un examen, sur le dernier PACS de la DRIMbox
  Un examen vit après sa première publication : plusieurs versions du CR, des images rejetées puis le
  retrait du CR. Chaque nouvelle version du KOS remplace la fiche en vigueur (RPLC vers la dernière
  version, pas vers la première), le retrait dépublie la fiche en vigueur, et toutes les versions
  gardent le FQDN dbN du PACS qui détient l'étude et l'identité du CR (guide d'intégration §2.1–2.2 ;
  FAQ ANS 8801). L'étude est prise sur le dernier PACS d'une DRIMbox mutualisée (le seul sinon). La
  version en vigueur du KOS est utilisée comme une DRIMbox Conso l'utilise : ses RetrieveURL, avec son
  propre SOPInstanceUID, doivent être servies.

  @req:SRC-06 @req:SRC-07 @req:KOS-01 @req:KOS-02 @req:KOS-03 @req:KOS-04 @req:KOS-05 @req:FQDN-02 @req:XDS-01 @req:XDS-02 @req:XDS-03 @req:XDS-04 @req:WADO-01
  Scénario: Deux nouvelles versions du KOS puis le retrait du CR
    Étant donné le dernier PACS de la DRIMbox détient une étude
    Et le KOS de cette étude a été publié au DMP, sans quoi la suite n'est pas jugée
    Quand le RIS envoie une nouvelle version du CR en MDM^T10
    Alors la DRIMbox publie la nouvelle version du KOS en remplacement (RPLC) de la précédente
    Et la nouvelle version du KOS référence exactement les instances que le PACS détient encore
    Quand le PACS supprime une instance de l'étude et envoie la note de rejet IOCM à la DRIMbox
    Alors la DRIMbox publie la nouvelle version du KOS en remplacement (RPLC) de la précédente
    Et la nouvelle version du KOS référence exactement les instances que le PACS détient encore
    Et chaque RetrieveURL de la version en vigueur du KOS, suivie avec le KOS-SOPInstanceUID de cette version, sert sa série sans refus 400, 404 ou 410
    Et chaque version du KOS de l'étude utilise le même FQDN dbN
    Et chaque version du KOS porte l'identité du CR : INS, accession et commande
    Et les métadonnées XDS de chaque version du KOS sont conformes et cohérentes avec le KOS et le CR
    Quand le RIS envoie le retrait du CR en ORU^R01
    Alors la DRIMbox dépublie le KOS de l'étude (ITI-57, statut Deleted)
    Et chaque version du KOS est un objet Key Object Selection valide selon dciodvfy, suit le gabarit Manifest et porte Retrieve AE Title et Retrieve Location UID
    Et chaque version est accompagnée d'un document de signature vérifiable
    Et la publication est faite en mTLS avec un certificat ORG AUTH_CLI
    Et le VIHF est signé par un certificat ORG SIGN et cohérent
