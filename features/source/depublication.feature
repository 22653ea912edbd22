# language: fr
Fonctionnalité: Dépublication du KOS (ITI-57, statut Deleted)
  Le retrait du CR par le RIS, ou la disparition de toutes les images de l'examen, dépublie le KOS :
  la fiche passe du statut Approved au statut urn:asip:ci-sis:2010:StatusType:Deleted (ITI-57).

  Contexte:
    Étant donné le premier PACS de la DRIMbox détient une étude
    Et le KOS de cette étude a été publié au DMP

  @req:SRC-07 @req:XDS-02 @req:XDS-03
  Scénario: Retrait du CR transmis en ORU^R01 (ORC|CA, OBX-11 D)
    Quand le RIS envoie le retrait du CR en ORU^R01
    Alors la DRIMbox dépublie le KOS de l'étude (ITI-57, statut Deleted)
    Et la publication est faite en mTLS avec un certificat ORG AUTH_CLI
    Et le VIHF est signé par un certificat ORG SIGN et cohérent

  @req:SRC-07
  Scénario: Retrait du CR transmis en MDM^T04
    Quand le RIS envoie le retrait du CR en MDM^T04
    Alors la DRIMbox dépublie le KOS de l'étude (ITI-57, statut Deleted)

  @req:SRC-07
  Scénario: Toutes les images de l'examen ont disparu du PACS
    Quand le PACS supprime toutes les instances de l'étude et envoie un OMI^O23 de modification
    Alors la DRIMbox dépublie le KOS de l'étude (ITI-57, statut Deleted)
