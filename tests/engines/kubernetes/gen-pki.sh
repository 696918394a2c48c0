#!/bin/bash
# One-time: CA, apiserver serving cert, service-account key pair, static tokens (admin + an unprivileged
# user "neo-user" for the RBAC tests), admin kubeconfig.
set -e
. "$(dirname "$0")/common.sh"

mkdir -p $P && cd $P
[ -f ca.crt ] && [ -f admin.kubeconfig ] && grep -q ',neo-user,' tokens.csv 2>/dev/null && exit 0
openssl genrsa -out ca.key 2048 2>/dev/null
openssl req -x509 -new -key ca.key -subj /CN=neo-k8s-ca -days 3650 -out ca.crt \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature \
  -addext subjectKeyIdentifier=hash
openssl genrsa -out apiserver.key 2048 2>/dev/null
openssl req -new -key apiserver.key -subj /CN=kube-apiserver -out apiserver.csr
cat > apiserver.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
subjectAltName=DNS:localhost,DNS:$(hostname),DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1
EXT
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
TOKEN=$(openssl rand -hex 24)
echo "$TOKEN,admin,admin-uid,\"system:masters\"" > tokens.csv
# a user with no rights of its own: the tests bind server/k8s/rbac.yaml's Role to it
echo "$(openssl rand -hex 24),neo-user,neo-user-uid" >> tokens.csv
cat > admin.kubeconfig <<KC
apiVersion: v1
kind: Config
clusters:
- name: neo-k8s
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: $P/ca.crt
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: neo-k8s
  context: {cluster: neo-k8s, user: admin, namespace: default}
current-context: neo-k8s
KC
chmod 600 *.key tokens.csv admin.kubeconfig
echo "PKI written to $P"
