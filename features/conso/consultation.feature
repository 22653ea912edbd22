# language: fr
Fonctionnalité: DRIMbox Conso — consultation du dossier d'imagerie d'un patient
  Un praticien ouvre depuis son RIS le dossier d'un patient : la DRIMbox Conso l'authentifie par Pro
  Santé Connect (via le Proxy e-santé), cherche les KOS du patient au DMP (ITI-18, ITI-43), demande
  les images en WADO-RS à la Source désignée par chaque RetrieveURL si elle figure dans la liste
  blanche, affiche les traits stricts de l'INS et les examens, puis exporte une étude vers son PACS
  à la demande du praticien (drimbox-spec §5, §6). drimcheck joue le RIS, le navigateur du
  praticien, Pro Santé Connect, le Proxy e-santé, le DMP et deux DRIMbox Source : l'une listée, l'autre
  absente de la liste blanche. Le dossier du patient contient les KOS de deux études de la Source listée
  (la première variée comme un examen réel : scanner, IRM, image multi-frame et compte rendu structuré, sur
  quatre séries ; la seconde en IRM), celui d'une étude de la Source non listée, et un KOS par hôte
  ressemblant à la Source listée dans son domaine de registre (suffixe, préfixe, port suivi d'un autre hôte,
  point final, confusable Unicode), qu'aucune liste ne nomme. Le dossier est ouvert une fois par campagne ;
  chaque scénario juge une exigence sur ce qui a été enregistré.

  Contexte:
    Étant donné le DMP détient pour un patient les KOS de deux études d'une Source listée, celui d'une Source absente de la liste blanche et ceux d'hôtes ressemblant à la Source listée
    Et un praticien a ouvert le dossier de ce patient depuis le RIS par appel contextuel

  @req:CON-02
  Scénario: Les traits stricts de l'INS sont affichés à l'ouverture du dossier
    Alors la page affiche les dix traits stricts de l'INS du patient

  @req:CON-03
  Scénario: Le DMP est consulté au nom du praticien connecté par Pro Santé Connect
    Alors le DMP a été consulté avec un VIHF construit depuis l'utilisateur Pro Santé Connect

  @req:CON-04
  Scénario: Les images de chaque étude sont demandées à la Source listée comme dans les exemples ANS
    Alors les requêtes WADO-RS vers la Source listée suivent les exemples ANS, chaque étude avec son propre KOS

  @req:PSC-02
  Scénario: La Source reçoit le jeton Pro Santé Connect du praticien
    Alors le jeton présenté à la Source est l'access token Pro Santé Connect actif du praticien

  @req:PSC-03
  Scénario: Le praticien est authentifié par Pro Santé Connect et un retour forgé est refusé
    Quand un navigateur revient de Pro Santé Connect vers la DRIMbox avec un state qu'elle ne lui a pas remis
    Alors la DRIMbox refuse ce retour sans présenter le code d'autorisation à Pro Santé Connect
    Et la DRIMbox avait envoyé le praticien vers Pro Santé Connect avec un state et un nonce

  @req:PSC-03
  Scénario: Un ID token Pro Santé Connect au nonce d'une autre demande est refusé
    Quand le praticien se reconnecte et que Pro Santé Connect rend un ID token au nonce d'une autre demande
    Alors la DRIMbox n'ouvre pas de session avec ce jeton : le DMP n'est pas consulté pour le patient

  @req:MTLS-02
  Scénario: La DRIMbox s'authentifie auprès de la Source en mTLS
    Alors la DRIMbox présente à la Source son certificat SERV_SSL (mTLS)

  @req:CON-05
  Scénario: L'étude exportée vers le PACS local est complète et identique à celle de la Source
    Quand le praticien exporte vers son PACS l'étude de la Source listée
    Alors l'étude exportée est complète et identique à celle de la Source

  @req:CON-07
  Scénario: L'export vers le PACS local conserve l'identité du patient
    Quand le praticien exporte vers son PACS l'étude de la Source listée
    Alors l'identité du patient est conservée à l'export

  @req:WL-06
  Scénario: La Source absente de la liste blanche n'est jamais contactée
    Alors aucune requête n'arrive à la Source absente de la liste blanche

  @req:WL-06
  Plan du scénario: Un hôte qui ressemble à la Source listée, dans son domaine de registre, n'est jamais contacté
    Alors aucune requête n'arrive à l'hôte qui ressemble à la Source listée par « <ressemblance> »

    Exemples:
      | ressemblance       |
      | suffixe            |
      | préfixe            |
      | port en plus       |
      | point final        |
      | confusable Unicode |

  @req:WL-06
  Scénario: Une Source retirée de la liste blanche entre deux consultations n'est plus contactée
    Étant donné la DRIMbox a contacté la Source listée, puis appliqué une liste blanche qui ne la liste plus
    Quand un praticien ouvre le dossier d'un patient dont le seul KOS désigne cette Source
    Alors aucune requête n'arrive à la Source retirée de la liste blanche

  @req:CON-08
  Scénario: L'existence du DMP et l'autorisation d'accès sont testées avant la recherche de documents
    Alors la DRIMbox a testé l'existence du DMP du patient et l'autorisation d'accès avant d'y chercher des documents
