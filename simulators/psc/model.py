"""The PSC's vocabulary: realm and endpoint constants, the practitioner, registry records, OAuthError."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from drimcheck.jose import fingerprint

REALM = "esante-wallet"

REALM_PATH = f"/auth/realms/{REALM}"

OIDC_PATH = f"{REALM_PATH}/protocol/openid-connect"

DEFAULT_FQDN = "auth.psc.drimcheck.test"

#: The authorization endpoint's own host, as the real PSC's ``https://wallet.esw.esante.gouv.fr/auth`` next to the
#: issuer ``https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet`` (published sandbox metadata, see
#: docs/psc-proxy-peers.md). Same listening socket, same certificate (both names in its SAN).
WALLET_FQDN = "wallet.psc.drimcheck.test"

WALLET_AUTH_PATH = "/auth"

#: OAuth 2.0 Multiple Response Type Encoding Practices (query, fragment) and Form Post Response Mode, as listed by
#: the real discovery document.
RESPONSE_MODES = ("query", "fragment", "form_post")

#: ``claims_supported`` and ``scopes_supported`` of the published PSC sandbox metadata, verbatim.
CLAIMS_SUPPORTED = ("aud", "sub", "iss", "auth_time", "name", "given_name", "family_name", "preferred_username",
                    "email", "acr")


SCOPES_SUPPORTED = ("openid", "address", "email", "identity", "microprofile-jwt", "offline_access", "phone",
                    "profile", "roles", "scope_1", "scope_2", "scope_all", "web-origins", "eidas2")


SESSION_COOKIE = "KEYCLOAK_SESSION"  # Keycloak's SSO session cookie: <realm>/<user id>/<session id>

DEFAULT_SCOPE = "openid scope_all"

ACR = "eidas1"

GRANT_CODE = "authorization_code"

GRANT_REFRESH = "refresh_token"

GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"

TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"

TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"

TOKEN_TYPE_REFRESH = "urn:ietf:params:oauth:token-type:refresh_token"

TOKEN_TYPE_ID = "urn:ietf:params:oauth:token-type:id_token"

#: Endpoint names used in records, faults and set_unavailable(endpoints=...).
ENDPOINTS = ("discovery", "realm", "auth", "token", "token-exchange", "userinfo", "introspect", "revoke", "certs",
             "logout")


_SUB_NAMESPACE = uuid.UUID("550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd")  # shape of PSC's federated "f:<uuid>:<id>" subs


# --------------------------------------------------------------------------- the practitioner


@dataclass(frozen=True)
class Activity:
    """One activity (exercise site) of a practitioner, as in PSC's ``SubjectRefPro.exercices[].activities[]``."""

    raison_sociale: str  # raisonSocialeSite
    ancien_identifiant: str  # ancienIdentifiantDeLaStructure (what the PoC matches the Situation parameter with)
    identifiant_technique: str = ""  # identifiantTechniqueDeLaStructure
    code_secteur: str = "SA07"  # codeSecteurDactivite (TRE_R02 SecteurActivite)
    code_mode_exercice: str = "L"
    numero_finess_site: str = ""
    numero_finess_ej: str = ""
    code_postal: str = "75009"
    bureau_cedex: str = "75009 PARIS"
    libelle_voie: str = "PASTEUR"

    def to_psc(self) -> dict[str, str]:
        return {
            "codeModeExercice": self.code_mode_exercice, "codeSecteurDactivite": self.code_secteur,
            "codeSectionPharmacien": "", "codeRole": "", "codeGenreActivite": "GENR01", "numeroSiretSite": "",
            "numeroSirenSite": "", "numeroFinessSite": self.numero_finess_site,
            "numeroFinessetablissementJuridique": self.numero_finess_ej,
            "identifiantTechniqueDeLaStructure": self.identifiant_technique, "raisonSocialeSite": self.raison_sociale,
            "enseigneCommercialeSite": "", "complementDestinataire": "", "complementPointGeographique": "",
            "numeroVoie": "1", "indiceRepetitionVoie": "", "codeTypeDeVoie": "R", "libelleVoie": self.libelle_voie,
            "mentionDistribution": "", "bureauCedex": self.bureau_cedex, "codePostal": self.code_postal,
            "codeCommune": "", "codePays": "99000", "telephone": "", "telephone2": "", "telecopie": "",
            "adresseEMail": "", "codeDepartement": "", "ancienIdentifiantDeLaStructure": self.ancien_identifiant,
            "autoriteDenregistrement": "CNOM/CNOM/CNOM",
        }


@dataclass(frozen=True)
class Exercice:
    """One professional exercise (``SubjectRefPro.exercices[]``); codes from TRE_G15 / TRE_R38 [I for SM44]."""

    nom: str  # nomDexercice
    prenom: str  # prenomDexercice
    activities: tuple[Activity, ...]
    code_profession: str = "10"  # médecin (TRE_G15 ProfessionSante)
    code_categorie: str = "C"  # civil
    code_civilite: str = "DR"
    code_type_savoir_faire: str = "S"  # spécialité ordinale
    code_savoir_faire: str = "SM44"  # radio-diagnostic et imagerie médicale [I]

    def to_psc(self) -> dict[str, Any]:
        return {
            "codeProfession": self.code_profession, "codeCategorieProfessionnelle": self.code_categorie,
            "codeCiviliteDexercice": self.code_civilite, "nomDexercice": self.nom, "prenomDexercice": self.prenom,
            "codeTypeSavoirFaire": self.code_type_savoir_faire, "codeSavoirFaire": self.code_savoir_faire,
            "activities": [a.to_psc() for a in self.activities],
        }


@dataclass(frozen=True)
class Practitioner:
    """A test health professional PSC logs in automatically.

    ``idnat`` is the national identifier (``SubjectNameID``, ``preferred_username``): ``8`` + RPPS for
    an RPPS practitioner, as on ANS test cards.
    """

    idnat: str
    family_name: str
    given_name: str
    exercices: tuple[Exercice, ...]
    civilite: str = "M"

    @property
    def sub(self) -> str:
        """PSC/Keycloak federated subject ``f:<uuid>:<idnat>``."""
        return f"f:{_SUB_NAMESPACE}:{self.idnat}"

    @property
    def rpps(self) -> str:
        return self.idnat[1:] if self.idnat.startswith("8") else self.idnat

    def userinfo(self) -> dict[str, Any]:
        """The UserInfo document, shaped as PSC's (fields read by the ANS PoC and by VIHF builders)."""
        first = self.exercices[0] if self.exercices else None
        activity = first.activities[0] if first and first.activities else None
        return {
            "Secteur_Activite": f"{activity.code_secteur}^1.2.250.1.71.4.2.4" if activity else "",
            "sub": self.sub,
            "codeGenreActivite": "GENR01",
            "SubjectOrganization": activity.raison_sociale if activity else "",
            "Mode_Acces_Raison": "",
            "preferred_username": self.idnat,
            "codeCivilite": self.civilite,
            "given_name": self.given_name,
            "Acces_Regulation_Medicale": "FAUX",
            "UITVersion": "1.0",
            "Palier_Authentification": "APPPRIP3^1.2.250.1.213.1.5.1.1.1",
            "SubjectRefPro": {"codeCivilite": self.civilite, "exercices": [e.to_psc() for e in self.exercices]},
            "SubjectOrganizationID": activity.identifiant_technique if activity else "",
            "SubjectRole": [f"{e.code_profession}^1.2.250.1.213.1.1.5.5" for e in self.exercices],
            "PSI_Locale": "1.2.250.1.213.1.3.1.1",
            "otherIds": [{"identifiant": self.rpps, "origine": "RPPS", "qualite": 1}],
            "SubjectNameID": self.idnat,
            "family_name": self.family_name,
        }


DEFAULT_PRACTITIONER = Practitioner(
    idnat="899700990349", family_name="RADIOLOGUE0990349", given_name="CLAIRE", civilite="MME",
    exercices=(Exercice(
        nom="RADIOLOGUE0990349", prenom="CLAIRE", code_civilite="DR",
        activities=(
            # the structure of the DUT's certificates (fixtures.pki DEFAULT_STRUCTURE_ID / DEFAULT_ORGANISATION)
            Activity(raison_sociale="DRIMCHECK CENTRE IMAGERIE TEST", ancien_identifiant="300000009990349",
                     identifiant_technique="R10000009990349", code_secteur="SA07"),
            Activity(raison_sociale="HOPITAL DRIMCHECK TEST", ancien_identifiant="1750099903",
                     identifiant_technique="F750099903", code_secteur="SA01", code_mode_exercice="S",
                     numero_finess_site="750099903", numero_finess_ej="750099900",
                     code_postal="75013", bureau_cedex="75013 PARIS", libelle_voie="DE L'HOPITAL"),
        ),
    ),),
)


# --------------------------------------------------------------------------- registry records


@dataclass
class OidcClient:
    """A registered OAuth client. ``redirect_uris`` entries are exact URIs, or prefixes ending with ``*``."""

    client_id: str
    secret: str | None = None
    redirect_uris: list[str] = field(default_factory=list)
    tls_subject_dns: list[str] = field(default_factory=list)  # RFC 8705 tls_client_auth_subject_dn values

    def redirect_allowed(self, uri: str) -> bool:
        for pattern in self.redirect_uris:
            if pattern.endswith("*") and uri.startswith(pattern[:-1]):
                return True
            if uri == pattern:
                return True
        return False


@dataclass
class Session:
    """A login session (Keycloak SSO session): its ``sid`` is the tokens' ``sid``/``session_state``."""

    sid: str
    practitioner: Practitioner
    client_id: str
    auth_time: int
    nonce: str | None
    scope: str
    ended_at: float | None = None


@dataclass
class TokenRecord:
    """A token this PSC issued. ``token`` is the raw string (memory only: never recorded as evidence)."""

    jti: str
    kind: str  # "access" | "refresh" | "id"
    token: str
    client_id: str
    sid: str
    claims: dict[str, Any]
    grant: str  # how it was obtained: authorization_code, refresh_token, token-exchange, issue_token
    parent_jti: str | None = None  # refresh token used, or subject token exchanged
    revoked_at: float | None = None
    forced_expired: bool = False

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.token)

    @property
    def expires_at(self) -> int:
        return int(self.claims.get("exp", 0))

    def state(self, now: float) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.forced_expired or now >= self.expires_at:
            return "expired"
        return "active"

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        out = {"jti": self.jti, "kind": self.kind, "fingerprint": self.fingerprint, "client_id": self.client_id,
               "sid": self.sid, "grant": self.grant, "parent_jti": self.parent_jti, "claims": dict(self.claims),
               "revoked_at": self.revoked_at, "forced_expired": self.forced_expired}
        if now is not None:
            out["state"] = self.state(now)
        return out


@dataclass(frozen=True)
class TokenSet:
    """What the token endpoint returned (or :meth:`PscSimulator.issue_token` minted)."""

    access_token: str
    expires_in: int
    scope: str
    sid: str
    refresh_token: str | None = None
    refresh_expires_in: int | None = None
    id_token: str | None = None
    token_type: str = "Bearer"

    def as_response(self) -> dict[str, Any]:
        out: dict[str, Any] = {"access_token": self.access_token, "expires_in": self.expires_in}
        if self.refresh_token:
            out.update(refresh_expires_in=self.refresh_expires_in, refresh_token=self.refresh_token)
        out["token_type"] = self.token_type
        if self.id_token:
            out["id_token"] = self.id_token
        out.update({"not-before-policy": 0, "session_state": self.sid, "scope": self.scope})
        return out


@dataclass
class _AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    sid: str
    scope: str
    nonce: str | None
    challenge: str | None
    challenge_method: str | None
    issued_at: float
    used: bool = False
    issued_jtis: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Fault:
    status: int
    error: str | None = None
    description: str | None = None


class OAuthError(Exception):
    """An OAuth/OIDC error answer: JSON ``{"error", "error_description"}`` with an HTTP status."""

    def __init__(self, status: int, error: str, description: str = "", *, www_authenticate: str | None = None):
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.www_authenticate = www_authenticate
