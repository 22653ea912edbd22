# language: fr
Fonctionnalité: Mise à jour du KOS publié (remplacement RPLC)
  Le KOS publié doit suivre l'examen : nouvelle version du CR, note de rejet IOCM envoyée par le PACS ou
  message OMI^O23 « Modification Examen Imagerie » donnent lieu à une nouvelle version du KOS publiée en
  remplacement de la précédente (ITI-41 avec association RPLC ; FAQ ANS 8801), sur le même FQDN dbN.
  La nouvelle version du CR (MDM^T10) est jouée dans la suite de mises à jour (sequences.feature).

  Contexte:
    Étant donné le premier PACS de la DRIMbox détient une étude
    Et le KOS de cette étude a été publié au DMP

  @req:SRC-06 @req:KOS-03 @req:FQDN-02
  Scénario: Note de rejet IOCM reçue du PACS
    Quand le PACS supprime une instance de l'étude et envoie la note de rejet IOCM à la DRIMbox
    Alors la DRIMbox publie la nouvelle version du KOS en remplacement (RPLC) de la précédente
    Et la nouvelle version du KOS référence exactement les instances que le PACS détient encore
    Et chaque version du KOS de l'étude utilise le même FQDN dbN

  @req:SRC-06 @req:KOS-03 @req:FQDN-02
  Scénario: Modification de l'examen signalée par OMI^O23
    Quand le PACS supprime une instance de l'étude et envoie un OMI^O23 de modification
    Alors la DRIMbox publie la nouvelle version du KOS en remplacement (RPLC) de la précédente
    Et la nouvelle version du KOS référence exactement les instances que le PACS détient encore
    Et chaque version du KOS de l'étude utilise le même FQDN dbN
