# language: fr
Fonctionnalité: Refus de publier ce qui ne doit pas l'être, et résistance aux échecs du DMP
  La DRIMbox ne publie que ce qui est cohérent : le CR et les images doivent porter le même IPP et le
  même numéro d'accession, le message HL7 doit être lisible et l'étude présente dans le PACS. Un refus
  est signalé au RIS par un acquittement d'erreur. Les refus portent sur des études distinctes (une
  pour les incohérences, une pour les messages mal formés, une absente des PACS) et sont observés dans
  une même fenêtre après le dernier envoi. Une étude déjà publiée reçoit ensuite une nouvelle version
  incohérente de son CR (la cohérence se vérifie à chaque version, pas seulement à la première), et un
  CR désigne une étude dont l'UID n'est qu'un préfixe de celui d'une étude détenue (seule une
  recherche par préfixe la trouverait). Un échec du DMP ne doit ni perdre le CR ni conduire à une
  double publication.

  @req:SRC-02 @req:SRC-03 @req:SRC-04
  Scénario: CR incohérents avec les images, même ressemblants, messages mal formés et étude absente : rien n'est publié
    Étant donné le premier PACS de la DRIMbox détient deux études
    Et le premier PACS de la DRIMbox détient une troisième étude, dont le KOS a été publié au DMP
    Quand le RIS envoie un CR dont le numéro d'accession diffère de celui des images
    Et le RIS envoie un CR dont l'IPP diffère de celui des images
    Et le RIS envoie un CR dont le numéro d'accession ressemble à celui des images : tronqué de son dernier caractère
    Et le RIS envoie un CR dont l'IPP ressemble à celui des images : en minuscules
    Et le RIS envoie le CR de l'étude sans OBX
    Et le RIS envoie le CR de l'étude avec un base64 invalide
    Et le RIS envoie le CR de l'étude avec un OID d'INS inconnu
    Et le RIS envoie le CR de l'étude avec un OID d'INS admis prolongé d'un suffixe
    Et le RIS envoie le CR validé d'une étude qu'aucun PACS de la DRIMbox ne détient
    Et le RIS envoie pour l'étude publiée une nouvelle version du CR en MDM^T10 dont le numéro d'accession diffère de celui des images
    Et le RIS envoie le CR validé d'une étude dont l'UID n'est qu'un préfixe de celui d'une étude détenue
    Alors chaque CR incohérent reçoit un acquittement d'erreur et aucun KOS n'est publié
    Et chaque message mal formé est refusé (AE ou AR) et aucun KOS n'est publié
    Et aucun KOS n'est publié pour l'étude absente des PACS
    Et la nouvelle version incohérente du CR de l'étude publiée reçoit un acquittement d'erreur et aucun KOS n'est publié
    Et aucune publication au DMP ne suit le CR de l'étude dont l'UID n'est qu'un préfixe de celui d'une étude détenue

  @req:SRC-05
  Scénario: Le DMP répond en échec aux deux premières tentatives de publication
    Étant donné le premier PACS de la DRIMbox détient une étude
    Et le DMP répondra en échec aux 2 prochaines publications
    Quand le RIS envoie le CR validé de l'étude en ORU^R01
    Alors la DRIMbox ne perd pas le CR et ne publie qu'une seule fois

  @req:SRC-05 @req:SRC-06
  Scénario: Le DMP répond en échec à la nouvelle version du KOS
    Étant donné le premier PACS de la DRIMbox détient une étude
    Et le KOS de cette étude a été publié au DMP
    Et le DMP répondra en échec à la prochaine publication
    Quand le RIS envoie une nouvelle version du CR en MDM^T10
    Alors la DRIMbox publie malgré l'échec du DMP la nouvelle version du KOS en remplacement (RPLC) de la précédente, une seule fois
