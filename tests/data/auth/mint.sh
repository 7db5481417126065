#!/usr/bin/env bash
# Makes the JWT fixtures of tests/unit/test_auth.c with tools independent of pollcast: keys
# with `openssl genpkey`/`openssl req`, signatures with `openssl dgst` (HMAC, RSA, ECDSA; the
# ECDSA DER signature is turned into JOSE's R || S with `openssl asn1parse` and xxd). Writes
# keys/*.pem, hs256.secret, tokens/*.jwt and cases.txt ("token|config|expected", where expected
# is "ok" or a fragment of the error message). The test clock is NOW below; tokens are minted
# around it so that the fixtures never expire. Run it again to regenerate everything (ES256
# signatures are randomized, so the tokens change).
set -euo pipefail
cd "$(dirname "$0")"
export LC_ALL=C

NOW=1700000000
SECRET='pollcast-test-secret-0123456789-abcdefghijklmnop'
OTHER_SECRET='another-secret-that-pollcast-was-not-given-012345'
ISS='https://issuer.test/'
AUD='pollcast-test'

rm -rf keys tokens
mkdir -p keys tokens
printf '%s' "$SECRET" > hs256.secret

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out keys/rsa_private.pem 2>/dev/null
openssl pkey -in keys/rsa_private.pem -pubout -out keys/rsa_public.pem
openssl req -x509 -new -key keys/rsa_private.pem -subj /CN=pollcast-test -days 36500 \
  -out keys/rsa_cert.pem 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out keys/rsa_other_private.pem 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out keys/rsa1024_private.pem 2>/dev/null
openssl pkey -in keys/rsa1024_private.pem -pubout -out keys/rsa1024_public.pem
openssl ecparam -name prime256v1 -genkey -noout -out keys/ec_private.pem
openssl ec -in keys/ec_private.pem -pubout -out keys/ec_public.pem 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out keys/ec_other_private.pem
openssl ecparam -name secp384r1 -genkey -noout -out keys/ec384_private.pem
openssl ec -in keys/ec384_private.pem -pubout -out keys/ec384_public.pem 2>/dev/null
rm keys/rsa1024_private.pem keys/ec384_private.pem

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
enc() { printf '%s' "$1" | b64url; }
hexkey() { xxd -p | tr -d '\n'; }

# sign ALG KEY INPUT: the base64url signature of INPUT. ALG is hs (KEY: the secret's bytes in
# hex), rs (KEY: a PEM private key), es (R || S) or esder (the DER form, which JOSE refuses).
sign() {
  local alg=$1 key=$2 input=$3
  case $alg in
  hs) printf '%s' "$input" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" -binary | b64url ;;
  rs) printf '%s' "$input" | openssl dgst -sha256 -sign "$key" -binary | b64url ;;
  esder) printf '%s' "$input" | openssl dgst -sha256 -sign "$key" -binary | b64url ;;
  es)
    printf '%s' "$input" | openssl dgst -sha256 -sign "$key" -binary > tokens/.sig.der
    local r s
    r=$(openssl asn1parse -inform DER -in tokens/.sig.der | awk -F: '/INTEGER/ {print $4}' | sed -n 1p)
    s=$(openssl asn1parse -inform DER -in tokens/.sig.der | awk -F: '/INTEGER/ {print $4}' | sed -n 2p)
    rm tokens/.sig.der
    # asn1parse prints each INTEGER without its leading zero bytes, or with one 00 when the
    # top bit is set: both come out as exactly 32 bytes.
    while [ ${#r} -gt 64 ]; do r=${r:2}; done
    while [ ${#s} -gt 64 ]; do s=${s:2}; done
    printf '%64s%64s' "$r" "$s" | tr ' ' 0 | xxd -r -p | b64url ;;
  none) printf '' ;;
  esac
}

SK=$(printf '%s' "$SECRET" | hexkey)
OSK=$(printf '%s' "$OTHER_SECRET" | hexkey)
RSAPUBK=$(hexkey < keys/rsa_public.pem)

: > cases.txt
# mint NAME HEADER PAYLOAD ALG KEY: writes tokens/NAME.jwt.
mint() {
  local h p
  h=$(enc "$2")
  p=$(enc "$3")
  printf '%s.%s.%s\n' "$h" "$p" "$(sign "$4" "$5" "$h.$p")" > "tokens/$1.jwt"
}
# expect NAME CONFIG EXPECTED: one line of cases.txt.
expect() { printf '%s|%s|%s\n' "$1" "$2" "$3" >> cases.txt; }

HS='{"alg":"HS256","typ":"JWT"}'
RS='{"alg":"RS256","typ":"JWT"}'
ES='{"alg":"ES256","typ":"JWT"}'
GRANT='"pollcast.subscribe":["prices","https://API.example.com:443/v1/"]'
# claims EXTRA...: the usual claims (iss, aud, sub, iat, exp, grant) with EXTRA members
# replacing them when they share a name.
claims() {
  local iss="\"iss\":\"$ISS\"" aud="\"aud\":\"$AUD\"" iat="\"iat\":$((NOW - 1000))"
  local exp="\"exp\":$((NOW + 3600))" grant="$GRANT" extra=""
  for kv in "$@"; do
    case $kv in
    iss=*) iss=${kv#iss=} ;;
    aud=*) aud=${kv#aud=} ;;
    iat=*) iat=${kv#iat=} ;;
    exp=*) exp=${kv#exp=} ;;
    grant=*) grant=${kv#grant=} ;;
    *) extra="$extra,$kv" ;;
    esac
  done
  local out="{\"sub\":\"alice\""
  for part in "$iss" "$aud" "$iat" "$exp" "$grant"; do
    [ -n "$part" ] && out="$out,$part"
  done
  printf '%s%s}' "$out" "$extra"
}

# HS256
mint hs_ok "$HS" "$(claims)" hs "$SK"
expect hs_ok hs ok
expect hs_ok rs "algorithm is not RS256"
expect hs_ok es "algorithm is not ES256"
expect hs_ok hs-noaud "has an audience and none is configured"
mint hs_forged "$HS" "$(claims)" hs "$OSK"
expect hs_forged hs "signature does not verify"
# The payload of one token with the signature of another (it granted less).
mint hs_small "$HS" "$(claims 'grant="pollcast.subscribe":["orders"]')" hs "$SK"
printf '%s.%s.%s\n' "$(cut -d. -f1 tokens/hs_ok.jwt)" "$(cut -d. -f2 tokens/hs_ok.jwt)" \
  "$(cut -d. -f3 tokens/hs_small.jwt)" > tokens/hs_tampered.jwt
expect hs_small hs ok
expect hs_tampered hs "signature does not verify"
mint hs_expired "$HS" "$(claims "exp=\"exp\":$((NOW - 3600))")" hs "$SK"
expect hs_expired hs "token expired"
mint hs_expired_in_leeway "$HS" "$(claims "exp=\"exp\":$((NOW - 10))")" hs "$SK"
expect hs_expired_in_leeway hs ok
mint hs_expired_at_leeway "$HS" "$(claims "exp=\"exp\":$((NOW - 30))")" hs "$SK"
expect hs_expired_at_leeway hs "token expired"
mint hs_nbf_future "$HS" "$(claims "\"nbf\":$((NOW + 3600))")" hs "$SK"
expect hs_nbf_future hs "not valid yet"
mint hs_nbf_in_leeway "$HS" "$(claims "\"nbf\":$((NOW + 10))")" hs "$SK"
expect hs_nbf_in_leeway hs ok
mint hs_nbf_past "$HS" "$(claims "\"nbf\":$((NOW - 10))")" hs "$SK"
expect hs_nbf_past hs ok
mint hs_iat_future "$HS" "$(claims "iat=\"iat\":$((NOW + 3600))")" hs "$SK"
expect hs_iat_future hs "issued in the future"
mint hs_no_exp "$HS" "$(claims exp=)" hs "$SK"
expect hs_no_exp hs "no exp claim"
mint hs_exp_string "$HS" "$(claims "exp=\"exp\":\"$((NOW + 3600))\"")" hs "$SK"
expect hs_exp_string hs "exp is not a valid NumericDate"
mint hs_exp_fraction "$HS" "$(claims "exp=\"exp\":$((NOW + 3600)).75")" hs "$SK"
expect hs_exp_fraction hs ok
mint hs_exp_exponent "$HS" "$(claims 'exp="exp":1.7000036e9')" hs "$SK"
expect hs_exp_exponent hs "exp is not a valid NumericDate"
mint hs_exp_negative "$HS" "$(claims 'exp="exp":-1')" hs "$SK"
expect hs_exp_negative hs "exp is not a valid NumericDate"
mint hs_wrong_aud "$HS" "$(claims 'aud="aud":"someone-else"')" hs "$SK"
expect hs_wrong_aud hs "audience is not this server"
mint hs_aud_array "$HS" "$(claims "aud=\"aud\":[\"someone-else\",\"$AUD\"]")" hs "$SK"
expect hs_aud_array hs ok
mint hs_aud_array_wrong "$HS" "$(claims 'aud="aud":["a","b"]')" hs "$SK"
expect hs_aud_array_wrong hs "audience is not this server"
mint hs_aud_nul "$HS" "$(claims "aud=\"aud\":\"$AUD\\u0000x\"")" hs "$SK"
expect hs_aud_nul hs "audience is not this server"
mint hs_no_aud "$HS" "$(claims aud=)" hs "$SK"
expect hs_no_aud hs "audience is not this server"
mint hs_wrong_iss "$HS" "$(claims 'iss="iss":"https://evil.test/"')" hs "$SK"
expect hs_wrong_iss hs "issuer is not the one configured"
mint hs_no_iss "$HS" "$(claims iss=)" hs "$SK"
expect hs_no_iss hs "issuer is not the one configured"
mint hs_bare "$HS" "$(claims iss= aud=)" hs "$SK"
expect hs_bare hs-noaud ok
mint hs_alg_none '{"alg":"none","typ":"JWT"}' "$(claims)" none ""
expect hs_alg_none hs "algorithm is not HS256"
expect hs_alg_none rs "algorithm is not RS256"
mint hs_alg_None '{"alg":"None"}' "$(claims)" none ""
expect hs_alg_None hs "algorithm is not HS256"
mint hs_alg_none_signed '{"alg":"none"}' "$(claims)" hs "$SK"
expect hs_alg_none_signed hs "algorithm is not HS256"
mint hs_alg_lower '{"alg":"hs256"}' "$(claims)" hs "$SK"
expect hs_alg_lower hs "algorithm is not HS256"
mint hs_alg_hs512 '{"alg":"HS512"}' "$(claims)" hs "$SK"
expect hs_alg_hs512 hs "algorithm is not HS256"
mint hs_no_alg '{"typ":"JWT"}' "$(claims)" hs "$SK"
expect hs_no_alg hs "algorithm is not HS256"
mint hs_dup_alg_last_none '{"alg":"HS256","alg":"none"}' "$(claims)" hs "$SK"
expect hs_dup_alg_last_none hs "algorithm is not HS256"
mint hs_typ_jose '{"alg":"HS256","typ":"JOSE"}' "$(claims)" hs "$SK"
expect hs_typ_jose hs "typ is not JWT"
mint hs_typ_at '{"alg":"HS256","typ":"application/at+jwt"}' "$(claims)" hs "$SK"
expect hs_typ_at hs ok
mint hs_typ_lower '{"alg":"HS256","typ":"jwt"}' "$(claims)" hs "$SK"
expect hs_typ_lower hs ok
mint hs_crit '{"alg":"HS256","crit":["exp"]}' "$(claims)" hs "$SK"
expect hs_crit hs "crit"
mint hs_no_claim "$HS" "$(claims grant=)" hs "$SK"
expect hs_no_claim hs ok  # valid, grants nothing: 403 at the HTTP front
mint hs_claim_string "$HS" "$(claims 'grant="pollcast.subscribe":"prices"')" hs "$SK"
expect hs_claim_string hs "no pollcast.subscribe claim"
mint hs_claim_nested "$HS" "$(claims 'grant="pollcast":{"subscribe":["prices"]}')" hs "$SK"
expect hs_claim_nested hs ok  # no top-level claim: grants nothing
mint hs_claim_number "$HS" "$(claims 'grant="pollcast.subscribe":["prices",5]')" hs "$SK"
expect hs_claim_number hs "non-empty strings"
mint hs_claim_empty_entry "$HS" "$(claims 'grant="pollcast.subscribe":[""]')" hs "$SK"
expect hs_claim_empty_entry hs "non-empty strings"
mint hs_claim_empty "$HS" "$(claims 'grant="pollcast.subscribe":[]')" hs "$SK"
expect hs_claim_empty hs ok
mint hs_claim_urls "$HS" "$(claims 'grant="pollcast.subscribe":["https://api.example.com/v1","http://user@evil/","ftp://x/","HTTPS://Data.Example.COM/"]')" hs "$SK"
expect hs_claim_urls hs ok
mint hs_header_not_json "not json" "$(claims)" hs "$SK"
expect hs_header_not_json hs "header is not valid JSON"
mint hs_header_array '["HS256"]' "$(claims)" hs "$SK"
expect hs_header_array hs "header is not a JSON object"
mint hs_payload_array "$HS" '[1,2]' hs "$SK"
expect hs_payload_array hs "payload is not a JSON object"
mint hs_payload_bad "$HS" '{"exp":' hs "$SK"
expect hs_payload_bad hs "payload is not a JSON object"
# Algorithm confusion: an HS256 token whose HMAC key is the RSA public key's PEM text, sent to
# a server that verifies RS256 with that public key.
mint confusion_hs_rsa_pub "$HS" "$(claims)" hs "$RSAPUBK"
expect confusion_hs_rsa_pub rs "algorithm is not RS256"

# RS256
mint rs_ok "$RS" "$(claims)" rs keys/rsa_private.pem
expect rs_ok rs ok
expect rs_ok rs-cert ok
expect rs_ok hs "algorithm is not HS256"
expect rs_ok es "algorithm is not ES256"
mint rs_forged "$RS" "$(claims)" rs keys/rsa_other_private.pem
expect rs_forged rs "signature does not verify"
mint rs_expired "$RS" "$(claims "exp=\"exp\":$((NOW - 3600))")" rs keys/rsa_private.pem
expect rs_expired rs "token expired"
# 342 characters of signature (256 bytes) cut to 340 (255 bytes, no stray bits).
cut -c1-$(( $(wc -c < tokens/rs_ok.jwt) - 3 )) tokens/rs_ok.jwt > tokens/rs_short_sig.jwt
expect rs_short_sig rs "signature does not verify"

# ES256
mint es_ok "$ES" "$(claims)" es keys/ec_private.pem
expect es_ok es ok
expect es_ok rs "algorithm is not RS256"
expect es_ok hs "algorithm is not HS256"
mint es_der "$ES" "$(claims)" esder keys/ec_private.pem
expect es_der es "signature does not verify"
mint es_forged "$ES" "$(claims)" es keys/ec_other_private.pem
expect es_forged es "signature does not verify"
mint es_wrong_aud "$ES" "$(claims 'aud="aud":"someone-else"')" es keys/ec_private.pem
expect es_wrong_aud es "audience is not this server"
echo "minted $(ls tokens | wc -l) tokens, $(wc -l < cases.txt) cases"
