#!/bin/sh
# Generates TLS test material with the openssl command into DIR.
#
#   gen-certs.sh DIR
#
# Every *.pem named below for a server or client holds the certificate chain
# followed by the private key (the form ferry.ini's tls_cert expects).
#   ca.pem            trusted root CA (certificate only)
#   other-ca.pem      an unrelated root CA (certificate only)
#   a-ec.pem          a.test + IP 127.0.0.1, ECDSA P-256, signed by ca
#   a-rsa.pem         a.test + IP 127.0.0.1, RSA 2048, signed by ca
#   b-ec.pem          b.test, ECDSA, signed by an intermediate (chain: leaf, inter)
#   b-rsa.pem         b.test, RSA, signed by ca
#   w-ec.pem          *.w.test, ECDSA, signed by ca
#   cn-ec.pem         CN=cn.test without subjectAltName, signed by ca
#   client.pem        client certificate (CN=client), signed by ca
#   client-untrusted.pem  client certificate signed by other-ca
#   server-untrusted.pem  a.test signed by other-ca
#   mismatch.pem      a.test certificate with a private key that is not its own
#   nokey.pem         a.test certificate without a key
#   empty.pem         no PEM object at all
# Idempotent: a complete directory is left as is. Fast: ECDSA except 3 RSA keys.
set -eu

dir=${1:?usage: gen-certs.sh DIR}
mkdir -p "$dir"
[ -f "$dir/.complete" ] && exit 0
cd "$dir"
OPENSSL=${OPENSSL:-openssl}
DAYS=3650

eckey() { "$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
rsakey() { "$OPENSSL" genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

# ca NAME KEY SUBJECT: self-signed root.
ca() {
    printf '%s\n' 'basicConstraints=critical,CA:TRUE' 'keyUsage=critical,keyCertSign,cRLSign' \
        'subjectKeyIdentifier=hash' > "$1.ext"
    "$OPENSSL" req -new -key "$2" -subj "$3" -out "$1.csr"
    "$OPENSSL" x509 -req -in "$1.csr" -signkey "$2" -days $DAYS -sha256 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

# leaf NAME KEY SUBJECT CA_PEM CA_KEY EXTENSIONS...: NAME.crt signed by CA.
leaf() {
    name=$1 key=$2 subj=$3 cacrt=$4 cakey=$5
    shift 5
    printf '%s\n' "$@" > "$name.ext"
    "$OPENSSL" req -new -key "$key" -subj "$subj" -out "$name.csr"
    "$OPENSSL" x509 -req -in "$name.csr" -CA "$cacrt" -CAkey "$cakey" -set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" \
        -days $DAYS -sha256 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

SRV='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth'
CLI='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth'

eckey ca.key; ca ca ca.key /CN=ferry-test-ca
eckey other-ca.key; ca other-ca other-ca.key /CN=ferry-other-ca
eckey inter.key
leaf inter inter.key /CN=ferry-test-inter ca.pem ca.key \
    'basicConstraints=critical,CA:TRUE,pathlen:0' 'keyUsage=critical,keyCertSign,cRLSign'

eckey a-ec.key; leaf a-ec a-ec.key /CN=a.test ca.pem ca.key "$SRV" 'subjectAltName=DNS:a.test,IP:127.0.0.1'
rsakey a-rsa.key; leaf a-rsa a-rsa.key /CN=a.test ca.pem ca.key "$SRV" 'subjectAltName=DNS:a.test,IP:127.0.0.1'
eckey b-ec.key; leaf b-ec b-ec.key /CN=b.test inter.crt inter.key "$SRV" 'subjectAltName=DNS:b.test'
rsakey b-rsa.key; leaf b-rsa b-rsa.key /CN=b.test ca.pem ca.key "$SRV" 'subjectAltName=DNS:b.test'
eckey w-ec.key; leaf w-ec w-ec.key /CN=w.test ca.pem ca.key "$SRV" 'subjectAltName=DNS:*.w.test'
eckey cn-ec.key; leaf cn-ec cn-ec.key /CN=cn.test ca.pem ca.key "$SRV"
eckey client.key; leaf client client.key /CN=client ca.pem ca.key "$CLI"
eckey client-untrusted.key
leaf client-untrusted client-untrusted.key /CN=client other-ca.pem other-ca.key "$CLI"
eckey server-untrusted.key
leaf server-untrusted server-untrusted.key /CN=a.test other-ca.pem other-ca.key "$SRV" \
    'subjectAltName=DNS:a.test,IP:127.0.0.1'
eckey other.key

for n in a-ec a-rsa b-rsa w-ec cn-ec client client-untrusted server-untrusted; do
    cat "$n.crt" "$n.key" > "$n.pem"
done
cat b-ec.crt inter.crt b-ec.key > b-ec.pem
cat a-ec.crt other.key > mismatch.pem
cp a-ec.crt nokey.pem
: > empty.pem
touch .complete
