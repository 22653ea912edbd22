# language: fr
Fonctionnalité: Publication au DMP du KOS d'un examen dont le compte rendu est validé
  Quand le RIS transmet le compte rendu (CR) validé en HL7 v2 sur MLLP, la DRIMbox Source interroge le
  PACS qui détient l'examen, construit le KOS qui en référence toutes les images et le publie au DMP
  (ITI-41) avec ses métadonnées, le VIHF et la signature du lot. L'URL de la DRIMbox inscrite dans le
  KOS est définitive une fois publiée (guide d'intégration §2.1, « Point d'attention »).

  @req:SRC-01 @req:KOS-01 @req:KOS-02 @req:KOS-03 @req:KOS-04 @req:KOS-05 @req:FQDN-01 @req:XDS-01 @req:XDS-02 @req:XDS-03 @req:XDS-04
  Scénario: CR validé transmis en ORU^R01
    Étant donné le premier PACS de la DRIMbox détient une étude variée : plusieurs séries, modalités et classes SOP, dont une image multi-frame et un compte rendu structuré
    Quand le RIS envoie le CR validé de l'étude en ORU^R01
    Alors la DRIMbox acquitte AA et publie le KOS de l'étude au DMP
    Et le KOS est un objet Key Object Selection valide selon dciodvfy
    Et le KOS suit le gabarit Manifest
    Et le KOS référence exactement les instances que le PACS détient pour l'étude
    Et le KOS porte l'identité du CR : INS, accession et commande
    Et le KOS porte Retrieve AE Title et Retrieve Location UID
    Et chaque RetrieveURL du KOS est sur le FQDN dbN du PACS qui détient l'étude
    Et les métadonnées XDS du KOS sont conformes et cohérentes avec le KOS et le CR
    Et la publication est faite en mTLS avec un certificat ORG AUTH_CLI
    Et le VIHF est signé par un certificat ORG SIGN et cohérent
    Et le lot est accompagné d'un document de signature vérifiable

  @req:SRC-01 @req:KOS-03 @req:KOS-04 @req:FQDN-01 @req:XDS-01
  Scénario: CR validé transmis en MDM^T02, patient identifié par un INS-NIA
    Étant donné le premier PACS de la DRIMbox détient une étude d'un patient identifié par son INS-NIA de test
    Quand le RIS envoie le CR validé de l'étude en MDM^T02
    Alors la DRIMbox acquitte AA et publie le KOS de l'étude au DMP
    Et le KOS référence exactement les instances que le PACS détient pour l'étude
    Et le KOS porte l'identité du CR : INS, accession et commande
    Et chaque RetrieveURL du KOS est sur le FQDN dbN du PACS qui détient l'étude
    Et les métadonnées XDS du KOS sont conformes et cohérentes avec le KOS et le CR
