#!/usr/bin/env bash
# A local certificate authority and one certificate per process for mutual TLS on internal gRPC.
#   scripts/make_certs.sh [out_dir]   (default: certs/)
# Writes ca.pem (+ ca-key.pem, keep it private) and <name>.pem / <name>-key.pem for billing, batch,
# worker, webhook and gateway. Each certificate is valid for the service's docker-compose host
# name, localhost and 127.0.0.1, as both server and client. Point a process at its files with
# REELBATCH_GRPC_TLS_CA_FILE, REELBATCH_GRPC_TLS_CERT_FILE and REELBATCH_GRPC_TLS_KEY_FILE.
set -euo pipefail
out="${1:-certs}"
days="${CERT_DAYS:-825}"
mkdir -p "$out"
cd "$out"
umask 077
if [[ ! -f ca.pem ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=Reelbatch local CA" \
    -keyout ca-key.pem -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
for name in billing batch worker webhook gateway; do
  cat > "$name.ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1
EXT
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$name-key.pem" -out "$name.csr" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days "$days" \
    -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
done
rm -f ca.srl
# Containers run as another user: certificates and keys must be readable by it (the CA key is not).
chmod 644 ./*.pem
chmod 600 ca-key.pem
echo "certificates written to $(pwd)"
