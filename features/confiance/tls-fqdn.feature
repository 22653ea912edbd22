# language: fr
Fonctionnalité: Certificats, versions TLS et flux en clair des FQDN dbN et viN
  Le FQDN viN présente un certificat SSL du marché de niveau OV au minimum (guide d'intégration §2.5).
  Les certificats présentés sont renouvelés à temps (§2.6) ; TLS 1.0 et 1.1 sont refusés (SECU-IG) ;
  en HTTP clair, seuls le challenge ACME, les CRL et les certificats d'AC sont admis (FAQ ANS, point
  de contrôle C17), et aucun ancien fichier de challenge ACME ne reste servi (CGI, §2.6).
  Chaque version ancienne est offerte comme un vieux client l'offrirait : avec toutes les suites que l'OpenSSL
  du banc sait négocier, puis avec les suites historiques qu'il n'a plus (3DES, RC4, DES, export, IDEA, SEED).

  @req:CRT-04
  Scénario: Le FQDN viN présente un certificat SSL du marché de niveau OV à son nom
    Quand drimcheck se connecte en TLS à chaque FQDN viN de la DRIMbox
    Alors le certificat présenté est un certificat OV du marché au nom du FQDN viN

  @req:CRT-03
  Scénario: Chaque certificat présenté sur les FQDN dbN et viN est en cours de validité
    Quand drimcheck se connecte en TLS à chaque FQDN dbN et viN de la DRIMbox
    Alors chaque certificat présenté est en cours de validité

  @req:CRT-05
  Scénario: TLS 1.0 et TLS 1.1 sont refusés sur les FQDN dbN et viN
    Quand drimcheck tente une poignée de main TLS 1.0 puis TLS 1.1 sur chaque FQDN dbN et viN
    Alors chaque tentative est refusée alors que TLS 1.2 ou plus est accepté

  @req:CLR-01
  Scénario: La visionneuse n'est pas servie en HTTP clair sur le FQDN viN
    Quand drimcheck interroge la visionneuse en HTTP clair sur chaque FQDN viN
    Alors aucun contenu applicatif n'est servi en clair

  @req:CLR-02
  Scénario: Aucun ancien fichier de challenge ACME n'est servi sur le FQDN viN
    Quand drimcheck explore /.well-known/acme-challenge/ et ses chemins voisins (sans barre finale, en majuscules) en HTTP clair sur chaque FQDN viN
    Alors aucun fichier de challenge ACME n'y est servi
