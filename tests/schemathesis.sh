#!/usr/bin/env bash
# Schemathesis (property-based API testing, PyPI) against the OpenAPI description the service serves
# (`/api/v1/openapi.json`, the hand-kept `gateway/openapi.json`), so that the description stays what
# the server does: every request the description allows is accepted, every one it forbids is
# refused, no request is a 5xx, and every answer (status code, content type, body) is one the
# description documents. Hand-written tests check the cases someone thought of; this checks the
# description against the server on thousands of generated requests, on every run of tests/run.
#
#   bash tests/schemathesis.sh     # needs ./target/debug/careledger (tests/run builds it) and python3
#
# The server runs on its defaults (SQLite in a fresh temporary directory, a generated JWT secret,
# none of the CARELEDGER_* settings of the caller's environment), on a free port, and is stopped
# whatever happens. The run is bounded in time (--max-time) and reproducible (--seed); schemathesis
# is installed once into target/schemathesis-venv.
#
# What the checks cannot know, and how this script tells them (each in the hooks below, nothing
# else is excluded):
# - Idempotency-Key: the same key with another request is refused (422, as the IETF draft asks).
#   Generated requests reuse the same few valid keys for different requests, which no correct
#   client does; the hooks give each request that carries a valid key a fresh one (invalid keys are
#   kept, so that their refusal is still checked).
# - Refusals a schema cannot state (a 422 for a schema-valid request): a log position no append has
#   reached (`after_position`), a code whose check digit is wrong, a reference the request names
#   that does not exist or is not usable (a division, a legal entity, a claim's line), one field
#   against another (a date before another, quantity × price), a key named twice in one request.
#   Such a 422 is accepted only when every invalid entry it names is one of those listed for that
#   operation in BUSINESS_RULES below; any other 422 for a schema-valid request still fails.
# - `POST /fhir` (a peer's Bundle): the description states the Bundle, not the FHIR resources in
#   it (FHIR R4 and the enrolment rules do). A 422 or 409 whose every issue is located in an
#   entry's resource (`Bundle.entry[i].resource...`) is accepted for a schema-valid Bundle; one
#   about the Bundle itself still fails. Each Bundle gets a fresh `Bundle.identifier.value`, as
#   the Idempotency-Key above, so that each is imported rather than answered from an earlier one. A NUL character in
#   any key or text of the Bundle (free JSON, which the schema cannot forbid) is refused as in every
#   body of the API.
# - The body limit (CARELEDGER_MAX_BODY_BYTES, 1 MiB): a request body larger than that is a 413
#   whatever its schema says (a schema bounds items, not bytes); a 413 is accepted for such a body.
# - The one setting changed from the defaults: CARELEDGER_CODES_MAX_NUMBER is 5000 instead of
#   1,000,000, so that a generated batch takes milliseconds rather than a minute (the description
#   states the default bound; `number` above 5000 is then a 422 the hooks accept as such).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[tests/schemathesis] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

VERSION=4.32.5
VENV=target/schemathesis-venv
BIN=./target/debug/careledger
# A legal entity and its division made before the run: the token acts for that legal entity (the
# equipment operations need one), and the description's examples name both.
LEGAL_ENTITY=0190f3a0-1111-7000-8000-00000000001e
DIVISION=0190f3a0-2222-7000-8000-0000000000d1
# every permission of every operation (README "Permissions")
SCOPE="111101 111102 101102 audit:read audit:read_all service_request:write service_request:read \
legal_entity:write division:write equipment:write equipment:read reference:write 111001 111002 111004 \
111006 111007 111008 111009 111010 111011 111012 101202 sync:read sync:write"
MAX_CODES=5000
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
CHECKS=$CHECKS,positive_data_acceptance,negative_data_rejection

[ -x "$BIN" ] || { log "no $BIN: build it first (cargo build -p careledger-gateway --bin careledger)"; exit 1; }
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  log "installing schemathesis $VERSION into $VENV"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian and Ubuntu ship venv's ensurepip separately
    log "installing python3-venv"
    rm -rf "$VENV"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q "schemathesis==$VERSION"
fi
PY="$VENV/bin/python"

work=$(mktemp -d)
server=""
stop() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# the server's defaults, whatever the caller's environment sets
clean_env=(env)
for name in $(compgen -e); do
  case "$name" in CARELEDGER_* | DATABASE_URL | NATS_URL) clean_env+=(-u "$name") ;; esac
done

port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
"${clean_env[@]}" RUST_LOG=warn CARELEDGER_CODES_MAX_NUMBER=$MAX_CODES \
  "$BIN" serve --data-dir "$work/data" --addr "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!
up=""
for _ in $(seq 1 150); do
  if "$PY" -c "import urllib.request as u; u.urlopen('$base/health', timeout=1)" 2>/dev/null; then up=1; break; fi
  kill -0 "$server" 2>/dev/null || break
  sleep 0.2
done
[ -n "$up" ] || { log "the server did not start:"; cat "$work/server.log" >&2; exit 1; }
log "server on $base (data in $work/data)"

token=$("${clean_env[@]}" "$BIN" token --data-dir "$work/data" --sub schemathesis --scope "$SCOPE" \
  --client-id "$LEGAL_ENTITY" --ttl 3600)

"$PY" - "$base" "$token" "$LEGAL_ENTITY" "$DIVISION" <<'PY'
import json, sys, urllib.request

base, token, legal_entity, division = sys.argv[1:]
def post(path, body):
    request = urllib.request.Request(base + path, json.dumps(body).encode(), method="POST", headers={
        "Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        assert answer.status in (200, 201), answer.status
post("/api/v1/legal-entities", {"id": legal_entity, "name": "City clinic", "edrpou": "12345678",
                                "type": "PRIMARY_CARE", "status": "ACTIVE"})
post("/api/v1/divisions", {"id": division, "legal_entity_id": legal_entity, "name": "Surgery",
                           "type": "CLINIC", "status": "ACTIVE"})
PY

cat >"$work/hooks.py" <<'PY'
import os
import re
import uuid

import schemathesis

# A valid Idempotency-Key: the description's pattern.
KEY = re.compile(r"^[ \t]*[!-~]([\t -~]{0,198}[!-~])?[ \t]*$")


@schemathesis.hook
def before_call(context, case, **kwargs):
    """A fresh valid key per request: a correct client never reuses one for another request."""
    for name, value in list((case.headers or {}).items()):
        if name.lower() == "idempotency-key" and isinstance(value, str) and KEY.match(value):
            case.headers[name] = str(uuid.uuid4())
    # each generated Bundle imported for itself, not answered as an earlier one of the same name
    body = case.body
    if case.operation.label == "POST /fhir" and isinstance(body, dict):
        identifier = body.get("identifier")
        if isinstance(identifier, dict) and isinstance(identifier.get("value"), str) and 0 < len(identifier["value"]) <= 200:
            identifier["value"] = str(uuid.uuid4())
        # a Bundle is imported only from the server its token was issued to: the token's subject
        if isinstance(identifier, dict) and "system" in identifier:
            identifier["system"] = "schemathesis"


# Refusals of schema-valid requests that no schema can state, per operation: (entry, rule,
# description) of an invalid entry, as regular expressions (array indexes written `[]`).
EVERY_QUERY = [("after_position", "number", "no event of the log has reached this position")]
CHECK_DIGIT = [("code", "format", "not a valid insuree code")]
LINE_VALUE = [(r"\$\.(items|services)\[\]\.price_asked", "invalid", "quantity × price")]
CODES = [(r"\$\.number", "number", "expected an integer from 1 to 5000$")]  # MAX_CODES, see above
BUSINESS_RULES = {
    "POST /api/v1/code-batches": CODES,
    "GET /api/v1/codes/{code}": CHECK_DIGIT,
    "POST /api/v1/codes/{code}/assignment": CHECK_DIGIT,
    "POST /api/v1/codes/{code}/control-number": CHECK_DIGIT,
    "POST /api/v1/codes/reservations": [(r"\$\.batch_id", "invalid", "another holder")] + CODES,
    "GET /api/v1/audit": [("to", "range", "after `from`")],
    "POST /api/v1/divisions": [(r"\$\.legal_entity_id", "invalid", "Legal entity not found")],
    "POST /api/v1/equipment": [(r"\$\.division_id", "invalid", "Division"),
                               (r"\$\.expiration_date", "date", "manufacture_date")],
    "POST /api/v1/equipment/{id}/division-links": [(r"\$\.division_id", "invalid", "Division")],
    "POST /api/v1/health-facilities": [(r"\$\.entries\[\]\.code", "unique", "named twice")],
    "POST /api/v1/medical-items": [(r"\$\.entries\[\]\.code", "unique", "named twice")],
    "POST /api/v1/medical-services": [(r"\$\.entries\[\]\.code", "unique", "named twice")],
    "POST /api/v1/insurees": [(r"\$\.entries\[\]\.uuid", "unique", "named twice")],
    "POST /api/v1/price-lists": [(r"\$\.entries\[\]\.health_facility", "unique", "named twice"),
                                 (r"\$\.entries\[\]\.(items|services)\[\]\.code", "unique", "named twice"),
                                 (r"\$\.entries\[\]\.(items|services)\[\]\.valid_to", "date", "valid_from")],
    "POST /api/v1/products": [(r"\$\.entries\[\]\.code", "unique", "named twice"),
                              (r"\$\.entries\[\]\.(items|services)\[\]\.code", "unique", "named twice")],
    "POST /api/v1/policies": [(r"\$\.entries\[\]\.uuid", "unique", "named twice"),
                              (r"\$\.entries\[\]\.expiry_date", "date", "effective_date")],
    # the token acts for no health facility, so it must name whose codes (one field needs the other);
    # text with control characters, a birth date ahead of today, a family head not registered
    "POST /api/v1/enrolment/insurees": [(r"\$\.holder_code", "required", "name the holder"),
                                        # one without the other (the description's dependentRequired)
                                        (r"\$\.holder_(type|code)", "required", "required property is missing"),
                                        (r"\$\.(last_name|other_names|location|holder_code|phone)", "invalid",
                                         "must be 1 to"),
                                        (r"\$\.birth_date", "invalid", "between 1900-01-01 and today"),
                                        (r"\$\.family_head", "invalid", "family head")],
    # an insuree or product this server does not hold, dates against each other, control characters
    "POST /api/v1/enrolment/policies": [(r"\$\.insuree_id", "invalid", "not registered"),
                                        (r"\$\.product_code", "invalid", "product"),
                                        (r"\$\.(expiry|effective)_date", "invalid", "_date")],
    "POST /api/v1/claims": LINE_VALUE,
    "PUT /api/v1/claims/{uuid}": LINE_VALUE,
    "POST /api/v1/claims/valuations": [(r"\$\.to", "date", "from")],
    "POST /api/v1/claims/{uuid}/review": [(r"\$\.lines\[\](\.index)?", "invalid", "no such line|passed line"),
                                          (r"\$\.lines\[\]\.(qty|price)_approved", "invalid", "quantity × price")],
    # an http(s) URL the URL parser refuses although the pattern admits it (a port above 65535...)
    "POST /api/v1/claims/{uuid}/attachments": [(r"\$\.url", "format", "http or https URL")],
    "PATCH /api/v1/claims/{uuid}/attachments/{id}": [(r"\$\.url", "format", "http or https URL")],
}


def _business_rule(operation, invalid):
    allowed = BUSINESS_RULES.get(operation, []) + (EVERY_QUERY if operation.startswith("GET ") else [])
    entry = re.sub(r"\[\d+\]", "[]", invalid.get("entry", ""))
    return all(
        any(re.fullmatch(e, entry) and re.fullmatch(r, rule["rule"]) and re.search(d, rule["description"])
            for e, r, d in allowed)
        for rule in invalid.get("rules", [])
    )


MAX_BODY_BYTES = 1 << 20  # CARELEDGER_MAX_BODY_BYTES's default


def _resource_rule(response):
    """A Bundle's refusal for what a resource in it says (`Bundle.entry[i].resource...`): the
    description states the Bundle, FHIR R4 and the enrolment rules state the resources."""
    try:
        issues = response.json()["issue"]
    except Exception:
        return False
    if all("NUL character" in i.get("diagnostics", "") for i in issues):
        located = ["NUL character"]  # the API's rule for every body, DESIGN rule 9
    else:
        located = [i.get("expression", [""])[0] if i.get("expression") else i.get("diagnostics", "") for i in issues]
        if not located or not all(l.startswith("Bundle.entry[") for l in located):
            return False
    with open(os.environ["ACCEPTED_REFUSALS"], "a") as log:
        for l in located:
            entry = re.sub(r"\[\d+\]", "[]", l.split(":")[0])
            log.write(f"POST /fhir  {entry}  {response.status_code}\n")
    return True


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but a 413 for a body over the limit, and a 422 for a schema-valid request
    naming only the rules listed above."""
    if failure.code in ("ST201", "ST202") and response.status_code == 413:
        body = getattr(response.request, "body", None) or b""
        if len(body.encode() if isinstance(body, str) else body) <= MAX_BODY_BYTES:
            return True
        with open(os.environ["ACCEPTED_REFUSALS"], "a") as log:
            log.write(f"{case.operation.label}  (body over {MAX_BODY_BYTES} bytes)  413\n")
        return False
    if case.operation.label == "POST /fhir" and failure.code == "ST202" and response.status_code in (409, 422):
        return not _resource_rule(response)
    if failure.code != "ST202" or response.status_code != 422:
        return True
    try:
        invalid = response.json()["error"]["invalid"]
    except Exception:
        return True
    if invalid and all(_business_rule(case.operation.label, i) for i in invalid):
        named = {(re.sub(r"\[\d+\]", "[]", i["entry"]), " ".join(r["rule"] for r in i["rules"])) for i in invalid}
        with open(os.environ["ACCEPTED_REFUSALS"], "a") as log:
            for entry, rules in sorted(named):
                log.write(f"{case.operation.label}  {entry}  {rules}\n")
        return False
    return True
PY

log "schemathesis $VERSION: $CHECKS"
status=0
venv=$(pwd)/$VENV
# run in the temporary directory: schemathesis keeps a cache of failures (.schemathesis/) in the
# working directory, and each run starts afresh, as its server does
(cd "$work" && ACCEPTED_REFUSALS="$work/accepted" SCHEMATHESIS_HOOKS="$work/hooks.py" \
  "$venv/bin/schemathesis" run "$base/api/v1/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks "$CHECKS" \
  --seed 23 \
  --max-time "${SCHEMATHESIS_MAX_TIME:-180}" \
  --max-examples 20 \
  --generation-database none \
  --no-color \
  "$@") || status=$?
if [ -s "$work/accepted" ]; then
  log "refusals of schema-valid requests accepted as business rules (count, operation, entry, rule):"
  sort "$work/accepted" | uniq -c | sort -rn >&2
fi
if [ "$status" -ne 0 ]; then
  log "schemathesis found failures (exit $status); the server's log:"
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
