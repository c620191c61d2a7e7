#!/usr/bin/env bash
# make-certs.sh — the TLS certificates of one site's venue broker and its clients.
#
# Creates, in one directory:
#   ca.key ca.crt                  the site CA (keep ca.key offline once the certificates are made)
#   crl.pem                        the CA's certificate revocation list (the broker's crlfile)
#   server.key server.crt          the broker's certificate, with the broker's name(s) and IP(s) as SAN
#   door.SITE.DOOR.key/.crt        one client certificate per door (CN = door.SITE.DOOR)
#   NAME.key/.crt                  one client certificate per supervisor account (CN = NAME)
#
# The broker takes each client's MQTT username from its certificate's CN
# (use_identity_as_username), so a certificate IS an account. Site and door names
# never contain ".", so door.SITE.DOOR names one door only (door-SITE-DOOR did not:
# hn-archive/1-scan-room and hn-archive-1/scan-room were the same account), and
# supervisor names may not contain "." either.
#
# Idempotent: an existing key is never replaced unless --force is given; an existing certificate
# is kept unless it is missing, no longer signed by ca.crt, expires within 30 days, or (server)
# lacks a requested name. Running it again with one more --door adds that door only.
# --revoke NAME revokes NAME.crt, moves its key and certificate to revoked/ (so a later
# --door/--supervisor makes a new key) and writes a new crl.pem.
# Keys are written with mode 0600. Needs only openssl (1.1.1 or 3.x); never prompts.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: make-certs.sh --site SITE --server-name HOST [options]
       make-certs.sh --dir DIR --revoke NAME [--revoke NAME ...]

  --site SITE           site name as in the controller's [site] site (e.g. hn-archive-1)
  --server-name HOST    DNS name the doors use for the broker (e.g. broker.archive.lan);
                        repeat for more names
  --ip ADDR             also put this IP address in the server certificate (repeatable)
  --door DOOR           make a client certificate for door DOOR (username door.SITE.DOOR);
                        repeatable
  --supervisor NAME     make a client certificate for supervisor account NAME (letters,
                        digits, - and _; repeatable). One account per tool: two
                        connections with one certificate replace each other
  --revoke NAME         revoke the certificate DIR/NAME.crt (e.g. door.hn-archive-1.vault),
                        move it and its key to DIR/revoked/ and write a new DIR/crl.pem;
                        install that as the broker's crlfile and restart the broker
  --dir DIR             where to write (default: ./certs-SITE)
  --days N              validity of server and client certificates in days (default 825)
  --ca-days N           validity of a new CA in days (default 3650)
  --crl-days N          validity of a new crl.pem in days (default 3650); the broker refuses
                        every client once its CRL has expired
  --force               replace existing keys and certificates (all clients must then get
                        the new files)
  -h, --help            this text

Example:
  ./make-certs.sh --site hn-archive-1 --server-name broker.archive.lan --ip 192.168.50.2 \
      --door scan-room --supervisor supervisor --dir /root/hn-archive-1-certs
  ./make-certs.sh --dir /root/hn-archive-1-certs --revoke door.hn-archive-1.scan-room
EOF
}

die() { echo "make-certs.sh: $*" >&2; exit 2; }

site="" dir="" days=825 ca_days=3650 crl_days=3650 force=0
names=() ips=() doors=() supervisors=() revokes=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --site) site="${2:?--site needs a value}"; shift 2 ;;
        --server-name) names+=("${2:?--server-name needs a value}"); shift 2 ;;
        --ip) ips+=("${2:?--ip needs a value}"); shift 2 ;;
        --door) doors+=("${2:?--door needs a value}"); shift 2 ;;
        --supervisor) supervisors+=("${2:?--supervisor needs a value}"); shift 2 ;;
        --dir) dir="${2:?--dir needs a value}"; shift 2 ;;
        --days) days="${2:?--days needs a value}"; shift 2 ;;
        --ca-days) ca_days="${2:?--ca-days needs a value}"; shift 2 ;;
        --crl-days) crl_days="${2:?--crl-days needs a value}"; shift 2 ;;
        --revoke) revokes+=("${2:?--revoke needs a name}"); shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ "$days" =~ ^[0-9]+$ && "$ca_days" =~ ^[0-9]+$ && "$crl_days" =~ ^[0-9]+$ ]] \
    || die "--days, --ca-days and --crl-days take a number"
command -v openssl >/dev/null || die "openssl is not installed (apt-get install openssl)"

# The CA's revocation bookkeeping, in a private openssl "ca" config.
ca_config() {
    cat >"$1" <<EOF
[ca]
default_ca = site_ca
[site_ca]
database = $dir/crl-index.txt
crlnumber = $dir/crlnumber
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
default_crl_days = $crl_days
unique_subject = no
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
EOF
}

# write_crl: DIR/crl.pem from the revocations recorded so far.
write_crl() {
    [[ -e "$dir/crl-index.txt" ]] || : >"$dir/crl-index.txt"
    [[ -s "$dir/crlnumber" ]] || echo 1000 >"$dir/crlnumber"
    ca_config "$work/ca.cnf"
    openssl ca -batch -config "$work/ca.cnf" -gencrl -out "$work/crl.pem" 2>"$work/err" \
        || die "cannot write the CRL: $(cat "$work/err")"
    chmod 0644 "$work/crl.pem"
    mv -f "$work/crl.pem" "$dir/crl.pem"
    echo "wrote  $dir/crl.pem ($(grep -c '^R' "$dir/crl-index.txt" || true) revoked)"
}

if [[ ${#revokes[@]} -gt 0 ]]; then
    [[ -n "$dir" || -n "$site" ]] || { usage >&2; die "--revoke needs --dir (or --site)"; }
    dir="${dir:-./certs-$site}"
    [[ -s "$dir/ca.key" && -s "$dir/ca.crt" ]] || die "$dir has no ca.key and ca.crt: revoke where the CA is"
    umask 077
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    ca_config "$work/ca.cnf"
    mkdir -p "$dir/revoked"
    for name in "${revokes[@]}"; do
        [[ "$name" =~ ^[A-Za-z0-9_.-]+$ && "$name" != ca && "$name" != server ]] \
            || die "'$name' is not a client certificate name"
        crt="$dir/$name.crt"
        [[ -s "$crt" ]] || die "no certificate $crt to revoke"
        openssl verify -CAfile "$dir/ca.crt" "$crt" >/dev/null 2>&1 || die "$crt is not signed by $dir/ca.crt"
        serial="$(openssl x509 -in "$crt" -noout -serial | cut -d= -f2)"
        [[ -e "$dir/crl-index.txt" ]] || : >"$dir/crl-index.txt"
        [[ -s "$dir/crlnumber" ]] || echo 1000 >"$dir/crlnumber"
        openssl ca -batch -config "$work/ca.cnf" -revoke "$crt" -crl_reason keyCompromise 2>"$work/err" \
            || die "cannot revoke $crt: $(cat "$work/err")"
        mv -f "$crt" "$dir/revoked/$name-$serial.crt"
        if [[ -e "$dir/$name.key" ]]; then mv -f "$dir/$name.key" "$dir/revoked/$name-$serial.key"; fi
        echo "revoked $name (serial $serial); moved to $dir/revoked/"
    done
    write_crl
    echo "install $dir/crl.pem as the broker's crlfile and restart the broker (a reload refuses new logins only)"
    exit 0
fi

[[ -n "$site" ]] || { usage >&2; die "--site is required"; }
[[ ${#names[@]} -gt 0 ]] || { usage >&2; die "--server-name is required"; }
name_re='^[a-z0-9][a-z0-9_-]{0,62}$'  # firmware_py/config/schema.py's site and door names: never a "."
[[ "$site" =~ $name_re ]] || die "site '$site': use lower-case letters, digits, - and _ (at most 63)"
for d in ${doors[@]+"${doors[@]}"}; do
    [[ "$d" =~ $name_re ]] || die "door '$d': use lower-case letters, digits, - and _ (at most 63)"
    user="door.$site.$d"
    [[ ${#user} -le 64 ]] \
        || die "door '$d': its account $user has ${#user} characters, a certificate CN holds 64: shorten the site or door name"
done
for s in ${supervisors[@]+"${supervisors[@]}"}; do
    [[ "$s" =~ ^[A-Za-z0-9_-]{1,64}$ ]] \
        || die "supervisor '$s': use letters, digits, - and _ (at most 64; no '.', which only door accounts have)"
done
for n in "${names[@]}"; do
    [[ "$n" =~ ^[A-Za-z0-9.-]+$ ]] || die "server name '$n' is not a DNS name"
done
for a in ${ips[@]+"${ips[@]}"}; do
    [[ "$a" =~ ^[0-9A-Fa-f:.]+$ ]] || die "'$a' is not an IP address"
done
dir="${dir:-./certs-$site}"
mkdir -p "$dir"
chmod 0700 "$dir"
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Extensions, in a private config so the system openssl.cnf cannot change the result.
san=""
for n in "${names[@]}"; do san+="${san:+,}DNS:$n"; done
for a in ${ips[@]+"${ips[@]}"}; do san+="${san:+,}IP:$a"; done
cat >"$work/ext.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = $san
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF

# new_key FILE: makes an EC P-256 key unless one exists (or --force). Prints "new" when made.
new_key() {
    local key="$1"
    if [[ -s "$key" && $force -eq 0 ]]; then
        chmod 0600 "$key"
        return 0
    fi
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/key.pem" 2>/dev/null
    chmod 0600 "$work/key.pem"
    mv -f "$work/key.pem" "$key"
    echo new
}

# cert_ok CERT [SAN]: the certificate exists, is signed by ca.crt, is valid for 30 more days
# and (for the server) carries exactly the requested names.
cert_ok() {
    local crt="$1" want_san="${2:-}"
    [[ -s "$crt" ]] || return 1
    openssl verify -CAfile "$dir/ca.crt" "$crt" >/dev/null 2>&1 || return 1
    openssl x509 -in "$crt" -noout -checkend 2592000 >/dev/null 2>&1 || return 1
    if [[ -n "$want_san" ]]; then
        local have
        have="$(openssl x509 -in "$crt" -noout -text | grep -A1 'Subject Alternative Name' | tail -n1 \
                | sed -e 's/^ *//' -e 's/IP Address:/IP:/g' -e 's/, /,/g')"
        [[ "$have" == "$want_san" ]] || return 1
    fi
    return 0
}

# issue NAME PROFILE [SAN]: key and certificate DIR/NAME.{key,crt} signed by the site CA.
issue() {
    local name="$1" profile="$2" want_san="${3:-}"
    local key="$dir/$name.key" crt="$dir/$name.crt" made
    made="$(new_key "$key")"
    if [[ -z "$made" && $ca_new -eq 0 ]] && cert_ok "$crt" "$want_san"; then
        echo "kept   $crt"
        return 0
    fi
    openssl req -new -config "$work/ext.cnf" -key "$key" -subj "/O=$site/CN=$name" -out "$work/req.pem"
    openssl x509 -req -in "$work/req.pem" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
        -extfile "$work/ext.cnf" -extensions "$profile" -out "$work/crt.pem" 2>/dev/null
    chmod 0644 "$work/crt.pem"
    mv -f "$work/crt.pem" "$crt"
    echo "issued $crt"
}

# The site CA.
ca_new=0
if [[ -n "$(new_key "$dir/ca.key")" ]] || ! [[ -s "$dir/ca.crt" ]]; then
    openssl req -x509 -new -config "$work/ext.cnf" -extensions v3_ca -key "$dir/ca.key" \
        -subj "/O=$site/CN=$site access control CA" -days "$ca_days" -sha256 -out "$work/ca.pem"
    chmod 0644 "$work/ca.pem"
    mv -f "$work/ca.pem" "$dir/ca.crt"
    ca_new=1
    echo "issued $dir/ca.crt (new CA: every client needs this ca.crt and a new certificate)"
else
    echo "kept   $dir/ca.crt"
fi
if [[ $ca_new -eq 1 ]]; then
    rm -f "$dir/crl-index.txt" "$dir/crl-index.txt.attr" "$dir/crlnumber"  # the old CA's revocations
fi
if [[ $ca_new -eq 1 || ! -s "$dir/crl.pem" ]]; then
    write_crl
else
    echo "kept   $dir/crl.pem"
fi

issue server server "$san"
for d in ${doors[@]+"${doors[@]}"}; do issue "door.$site.$d" client; done
for s in ${supervisors[@]+"${supervisors[@]}"}; do issue "$s" client; done
