# language: fr
Fonctionnalité: Certificat et transport du FQDN dbN
  Chaque DRIMbox est servie sur les FQDN fixes attribués par l'ANS (dbN.<registre>.mesimagesmedicales.fr),
  en HTTPS avec un certificat SERV_SSL de l'IGC-Santé (guide d'intégration §2.1, §2.5). Seuls quelques
  flux sont admis en HTTP clair (FAQ ANS, point de contrôle C17).

  @req:CRT-01 @req:CRT-02 @req:CRT-03
  Scénario: Certificat SERV_SSL IGC-Santé valide et au nom du FQDN dbN
    Quand drimcheck se connecte en TLS à chaque FQDN dbN de la DRIMbox
    Alors le certificat présenté chaîne vers la racine IGC-Santé avec l'usage serveur
    Et le certificat porte le FQDN dbN dans son subjectAltName
    Et le certificat est en cours de validité

  @req:CLR-01
  Scénario: Le HealthCheck n'est pas exposé en HTTP clair
    Quand drimcheck interroge le HealthCheck et ses chemins voisins (barre finale, majuscules, paramètre) en HTTP clair sur chaque FQDN dbN
    Alors aucun contenu applicatif n'est servi en clair
