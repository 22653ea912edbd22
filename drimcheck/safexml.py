"""Parsing XML that a DUT (or any outside party) wrote: bounded in size, nodes and depth, inert.

Every XML document drimcheck reads from outside (SOAP envelopes of the DMP simulator, signature
documents, SAML/VIHF assertions, whitelists) goes through :func:`fromstring`:

* size: at most ``limits.MAX_XML_BYTES`` bytes, checked before the parser sees a byte;
* nodes: at most :data:`MAX_XML_NODES` elements + attributes, bounded from above *before* parsing by
  counting ``<`` and ``=`` (every element starts with ``<``, every attribute has ``=``): a flat 16 MiB
  document of ``<a/>`` would otherwise become ~550 MB of libxml2 nodes (measured: ~120 bytes per element,
  ~220 bytes per attribute);
* depth: ``limits.MAX_XML_DEPTH`` (256) is libxml2's own limit without ``XML_PARSE_HUGE``
  (``huge_tree=False``): a deeper document fails with "Excessive depth in document";
* entities: never resolved, no DTD loaded, no network; libxml2's amplification guard refuses a
  "billion laughs" document before it grows.

Failures raise :class:`XmlRejected` (a ValueError) with one French line; callers rewrap it in their own
error type (``XdsParseError``, ``UnusableInput``).
"""

from __future__ import annotations

from lxml import etree

from drimcheck.limits import MAX_XML_BYTES, MAX_XML_DEPTH, human_bytes

#: Upper bound on elements + attributes of one document (legitimate DRIM-M documents have a few
#: thousand: ebRIM metadata, a CDA report, a whitelist of some hundred domains). 250 000 nodes keep one
#: parsed tree under ~60 MB in the worst case (all attributes). To move to drimcheck/limits.py.
MAX_XML_NODES = 250_000

#: libxml2's maximum element depth without XML_PARSE_HUGE; MAX_XML_DEPTH may not exceed it (it is enforced
#: by the parser itself, no second pass).
LIBXML2_MAX_DEPTH = 256
assert MAX_XML_DEPTH <= LIBXML2_MAX_DEPTH


class XmlRejected(ValueError):
    """The document exceeds a cap or is not well-formed XML (one French line)."""


def parser(*, collect_ids: bool = True) -> etree.XMLParser:
    """A fresh parser (lxml parsers are not thread-safe across concurrent parses): no DTD, no entity
    resolution, no network, libxml2's default limits (depth 256, text nodes of 10 MB)."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_blank_text=False, collect_ids=collect_ids)


def check_size(data: bytes, what: str = "document XML") -> None:
    """XmlRejected when ``data`` exceeds MAX_XML_BYTES or may hold more than MAX_XML_NODES nodes."""
    if len(data) > MAX_XML_BYTES:
        raise XmlRejected(f"{what} trop volumineux : {len(data)} octets, plus de {human_bytes(MAX_XML_BYTES)}")
    nodes = data.count(b"<") + data.count(b"=")
    if nodes > MAX_XML_NODES:
        raise XmlRejected(f"{what} trop complexe : jusqu'à {nodes} éléments et attributs, plus de {MAX_XML_NODES}")


def fromstring(data: bytes, what: str = "document XML", *, collect_ids: bool = True) -> etree._Element:
    """Parse untrusted XML within the caps; XmlRejected (one French line) otherwise."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    check_size(data, what)
    try:
        return etree.fromstring(data, parser(collect_ids=collect_ids))
    except etree.XMLSyntaxError as exc:
        message = str(exc)
        if "Excessive depth" in message:
            raise XmlRejected(f"{what} : imbrication de plus de {MAX_XML_DEPTH} niveaux") from None
        if "amplification" in message or "entity" in message.lower() and "loop" in message.lower():
            raise XmlRejected(f"{what} : expansion d'entités refusée ({message})") from None
        raise XmlRejected(f"{what} : XML invalide ({message})") from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise XmlRejected(f"{what} : XML illisible ({type(exc).__name__})") from None


__all__ = ["MAX_XML_NODES", "XmlRejected", "parser", "check_size", "fromstring"]
