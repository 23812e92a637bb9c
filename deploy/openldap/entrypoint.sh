#!/bin/sh
# Builds a private cn=config on first start, runs slapd in the foreground on
# port 1389 (LDAP_PORT) and loads seed.ldif through the running server (so that the
# memberof overlay fills memberOf).
set -eu
DIR="${LDAP_DEMO_DIR:-/var/lib/ldap-demo}"
SEED_FILE="${LDAP_SEED_FILE:-/etc/ldap-demo/seed.ldif}"
PORT="${LDAP_PORT:-1389}"
PW="${LDAP_ADMIN_PASSWORD:-admin}"
if [ ! -d "$DIR/slapd.d" ]; then
  mkdir -p "$DIR/slapd.d" "$DIR/data"
  cat > "$DIR/config.ldif" <<LDIF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $DIR/slapd.pid

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: memberof
olcModuleLoad: refint

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/nis.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcDbDirectory: $DIR/data
olcSuffix: dc=example,dc=org
olcRootDN: cn=admin,dc=example,dc=org
olcRootPW: $PW
olcAccess: {0}to * by * read

dn: olcOverlay={0}memberof,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {0}memberof
olcMemberOfRefInt: TRUE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf

dn: olcOverlay={1}refint,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcRefintConfig
olcOverlay: {1}refint
olcRefintAttribute: member uniqueMember
LDIF
  slapadd -n 0 -F "$DIR/slapd.d" -l "$DIR/config.ldif"
  SEED=1
fi
slapd -F "$DIR/slapd.d" -h "ldap://0.0.0.0:$PORT/" -d 0 &
PID=$!
trap 'kill -TERM $PID' TERM INT
for _ in $(seq 1 100); do
  ldapsearch -x -H ldap://127.0.0.1:$PORT/ -b "" -s base >/dev/null 2>&1 && break
  sleep 0.1
done
if [ "${SEED:-0}" = 1 ]; then
  ldapadd -x -H ldap://127.0.0.1:$PORT/ -D cn=admin,dc=example,dc=org -w "$PW" -f "$SEED_FILE"
fi
wait $PID
