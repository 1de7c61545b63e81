#!/usr/bin/env python3
"""Writes the hand-made seed inputs to fuzz/seeds/<target>/ (the shapes tests/e2e/saml.rs and
the crates' unit tests send), signed with the throwaway SP key in fuzz/keys/. The committed
corpora in fuzz/corpus/ started from these and were minimised with `cargo fuzz cmin`.

Needs python3, openssl and xmlsec1 (the same packages .ci/run installs)."""

import base64
import json
import os
import subprocess
import tempfile
import urllib.parse
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = os.path.join(HERE, "keys", "sp.key.pem")
CERT = os.path.join(HERE, "keys", "sp.cert.pem")
OUT = os.path.join(HERE, "seeds")

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SP = "https://sp.example/metadata"
INSTANT = "2026-01-01T00:00:00Z"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


def cert_base64():
    with open(CERT) as f:
        return "".join(l for l in f.read().splitlines() if "CERTIFICATE" not in l)


def write(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(OUT, target, name), "wb") as f:
        f.write(data)


def deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data.encode()) + c.flush()


def pct(s):
    return urllib.parse.quote(s, safe="")


def rsa_sign(data, digest):
    with tempfile.NamedTemporaryFile() as f:
        f.write(data.encode())
        f.flush()
        return subprocess.run(
            ["openssl", "dgst", "-" + digest, "-sign", KEY, f.name],
            check=True, capture_output=True).stdout


def redirect_query(param, xml, relay=None, sig_alg=None):
    query = f"{param}={pct(base64.b64encode(deflate(xml)).decode())}"
    if relay is not None:
        query += f"&RelayState={pct(relay)}"
    if sig_alg:
        query += f"&SigAlg={pct(sig_alg)}"
        digest = "sha1" if sig_alg == RSA_SHA1 else "sha256"
        query += f"&Signature={pct(base64.b64encode(rsa_sign(query, digest)).decode())}"
    return query


def signature_template(ref_id):
    return (
        '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>'
        '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
        f'<ds:SignatureMethod Algorithm="{RSA_SHA256}"/>'
        f'<ds:Reference URI="#{ref_id}"><ds:Transforms>'
        '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
        '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
        '</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        '<ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>'
        '<ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data>'
        f'<ds:X509Certificate>{cert_base64()}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>'
    )


def sign_enveloped(xml, element):
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        f.write(xml.encode())
        f.flush()
        return subprocess.run(
            ["xmlsec1", "--sign", "--privkey-pem", KEY, "--id-attr:ID", f"{SAMLP}:{element}", f.name],
            check=True, capture_output=True).stdout.decode()


def authn_request(rid="_a1", attrs="", body="", signed=False):
    signature = signature_template(rid) if signed else ""
    xml = (
        f'<samlp:AuthnRequest xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="{rid}" Version="2.0" '
        f'IssueInstant="{INSTANT}" Destination="https://idp.example/saml/sso"{attrs}>'
        f"<saml:Issuer>{SP}</saml:Issuer>{signature}{body}</samlp:AuthnRequest>"
    )
    return sign_enveloped(xml, "AuthnRequest") if signed else xml


def logout_request(rid="_l1", signed=False):
    signature = signature_template(rid) if signed else ""
    xml = (
        f'<samlp:LogoutRequest xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="{rid}" Version="2.0" '
        f'IssueInstant="{INSTANT}" Destination="https://idp.example/saml/slo">'
        f"<saml:Issuer>{SP}</saml:Issuer>{signature}"
        f'<saml:NameID Format="{PERSISTENT}">user-1</saml:NameID>'
        "<samlp:SessionIndex>s1</samlp:SessionIndex><samlp:SessionIndex>s2</samlp:SessionIndex>"
        "</samlp:LogoutRequest>"
    )
    return sign_enveloped(xml, "LogoutRequest") if signed else xml


def logout_response(rid="_r1", status="Success", signed=False):
    signature = signature_template(rid) if signed else ""
    xml = (
        f'<samlp:LogoutResponse xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="{rid}" Version="2.0" '
        f'IssueInstant="{INSTANT}" InResponseTo="_x" Destination="https://idp.example/saml/slo">'
        f"<saml:Issuer>{SP}</saml:Issuer>{signature}"
        f'<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:{status}"/>'
        "</samlp:Status></samlp:LogoutResponse>"
    )
    return sign_enveloped(xml, "LogoutResponse") if signed else xml


AUTHN_VARIANTS = {
    "plain": authn_request(),
    "acs_url": authn_request(attrs=' AssertionConsumerServiceURL="https://sp.example/acs" '
                             'ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"'),
    "acs_index": authn_request(attrs=' AssertionConsumerServiceIndex="1" ForceAuthn="true" IsPassive="false"'),
    "policy_context": authn_request(body=(
        f'<samlp:NameIDPolicy Format="{PERSISTENT}" SPNameQualifier="{SP}" AllowCreate="true"/>'
        '<samlp:RequestedAuthnContext Comparison="minimum">'
        "<saml:AuthnContextClassRef>https://data.gov.dk/concept/core/nsis/loa/Substantial</saml:AuthnContextClassRef>"
        "</samlp:RequestedAuthnContext>")),
    "doctype": '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]>' + authn_request(),
}


def saml():
    for name, xml in AUTHN_VARIANTS.items():
        write("saml_redirect_authn", f"xml_{name}", b"\x01" + xml.encode())
        write("saml_post_authn", f"xml_{name}", b"\x01" + xml.encode())
    xml = AUTHN_VARIANTS["plain"]
    write("saml_redirect_authn", "wire_unsigned", b"\x00" + redirect_query("SAMLRequest", xml, "r").encode())
    write("saml_redirect_authn", "wire_sha256", b"\x00" + redirect_query("SAMLRequest", xml, "https://sp.example/x?a=b", RSA_SHA256).encode())
    write("saml_redirect_authn", "wire_sha1", b"\x00" + redirect_query("SAMLRequest", xml, None, RSA_SHA1).encode())
    signed = authn_request(signed=True)
    write("saml_post_authn", "xml_signed", b"\x01" + signed.encode())
    write("saml_post_authn", "wire_signed", b"\x00" + base64.b64encode(signed.encode()) + b"\nrelay")

    write("saml_redirect_logout", "xml_request", b"\x01" + logout_request().encode())
    write("saml_redirect_logout", "xml_response", b"\x03" + logout_response(status="PartialLogout").encode())
    write("saml_redirect_logout", "wire_request_signed", b"\x00" + redirect_query("SAMLRequest", logout_request(), "r", RSA_SHA256).encode())
    write("saml_redirect_logout", "wire_response_signed", b"\x02" + redirect_query("SAMLResponse", logout_response(), None, RSA_SHA256).encode())
    write("saml_post_logout", "xml_request", b"\x01" + logout_request().encode())
    write("saml_post_logout", "xml_request_signed", b"\x01" + logout_request(signed=True).encode())
    write("saml_post_logout", "xml_response", b"\x03" + logout_response().encode())
    write("saml_post_logout", "xml_response_signed", b"\x03" + logout_response(signed=True).encode())
    write("saml_post_logout", "wire_request", b"\x00" + base64.b64encode(logout_request().encode()) + b"\nrelay")

    cert = cert_base64()
    kd = lambda use, methods="": (
        f'<md:KeyDescriptor{use}><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}'
        f"</ds:X509Certificate></ds:X509Data></ds:KeyInfo>{methods}</md:KeyDescriptor>")
    methods = ('<md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm"/>'
               '<md:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/>')
    for name, kds, extra in [
        ("minimal", "", ""),
        ("keys", kd(' use="signing"') + kd(' use="encryption"', methods), ""),
        ("unused_key_slo", kd(""), '<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
                                  'Location="https://sp.example/slo" ResponseLocation="https://sp.example/slo/r"/>'),
    ]:
        write("saml_sp_metadata", name, (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
            f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{SP}">'
            '<md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="1" '
            f'protocolSupportEnumeration="{SAMLP}">{kds}{extra}'
            '<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</md:NameIDFormat>'
            '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
            'Location="https://sp.example/acs" index="0" isDefault="true"/>'
            '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
            'Location="https://sp.example/acs2" index="7" isDefault="false"/>'
            "</md:SPSSODescriptor></md:EntityDescriptor>"))


def oidc():
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    base = ("response_type=code&client_id=rp&redirect_uri=https%3A%2F%2Frp.example%2Fcb"
            f"&scope=openid+profile+email&code_challenge={challenge}&code_challenge_method=S256")
    for name, extra in [
        ("minimal", ""),
        ("full", "&state=st%3Cx%3E&nonce=n1&prompt=login+consent&max_age=300&login_hint=anna"
                 "&ui_locales=da&acr_values=https%3A%2F%2Fdata.gov.dk%2Fconcept%2Fcore%2Fnsis%2Floa%2FSubstantial"),
        ("form_post", "&response_mode=form_post&state=%22%3E%3Cscript%3E"),
        ("prompt_none", "&prompt=none&state=s"),
        ("bad_mode", "&response_mode=fragment&state=s"),
        ("request_object", "&request=eyJ&state=s"),
        ("duplicate", "&client_id=rp"),
    ]:
        write("oidc_authorize", name, base + extra)
    write("oidc_authorize", "native", base.replace("client_id=rp", "client_id=native")
          .replace("https%3A%2F%2Frp.example%2Fcb", "http%3A%2F%2F127.0.0.1%3A8080%2Fcb"))

    basic = "Basic " + base64.b64encode(b"rp:s3cret").decode()
    code = "grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Frp.example%2Fcb&code_verifier=" + "v" * 43
    write("oidc_token", "basic_code", basic + "\n" + code)
    write("oidc_token", "post_code", "\n" + code + "&client_id=rp&client_secret=s3cret")
    write("oidc_token", "public_code", "\n" + code + "&client_id=native")
    write("oidc_token", "refresh", basic + "\ngrant_type=refresh_token&refresh_token=rt&scope=openid")
    write("oidc_token", "basic_encoded", "basic " + base64.b64encode(b"r%3Ap+x:s%2B3") .decode() + "\n" + code)
    write("oidc_token", "both_methods", basic + "\n" + code + "&client_secret=x&client_id=other")

    # A P-256 public key as an app sends it.
    pem = subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "ec", "-pubout", "-outform", "DER"], input=pem,
                         check=True, capture_output=True).stdout
    point = der[-64:]
    b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    write("app_public_key", "jwk", json.dumps({"kty": "EC", "crv": "P-256", "x": b64u(point[:32]), "y": b64u(point[32:])}))
    write("app_public_key", "jwk_extra", json.dumps({"kty": "EC", "crv": "P-256", "x": b64u(point[:32]), "y": b64u(point[32:]), "kid": "k", "use": "sig"}))
    write("app_public_key", "not_on_curve", json.dumps({"kty": "EC", "crv": "P-256", "x": b64u(b"\x01" * 32), "y": b64u(b"\x02" * 32)}))

    form = "application/x-www-form-urlencoded"
    write("strict_form", "login", f"{form}\nusername=anna&csrf=abc%2B&remember=on")
    write("strict_form", "charset", f"{form}; charset=UTF-8\nusername=%C3%A6bleg%C3%A5rd+x&csrf=c&extra=1")
    write("strict_form", "bad_utf8", f"{form}\nusername=%FF%FE&csrf=c")
    write("strict_form", "json", 'application/json\n{"username":"anna"}')


if __name__ == "__main__":
    saml()
    oidc()
