//! A throwaway OpenLDAP slapd: mdb backend with the memberof and refint
//! overlays, in a temp directory on a random loopback port. Seeded online
//! with `ldapadd` (so memberOf is populated); killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, install_hint};

pub const SUFFIX: &str = "dc=example,dc=org";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PW: &str = "admin";
const SLAPD: &str = "/usr/sbin/slapd";

/// A running slapd; `Drop` kills it (SIGKILL) so no stray process remains.
pub struct Slapd {
    dir: tempfile::TempDir,
    port: u16,
    pid: Option<u32>,
}

impl Slapd {
    /// Starts an empty directory holding only the suffix and `ou=people`,
    /// `ou=groups`. Fails (never skips) when slapd or ldap-utils is missing.
    pub fn start() -> Slapd {
        assert!(
            Path::new(SLAPD).exists(),
            "{}",
            install_hint("slapd", "slapd ldap-utils")
        );
        assert!(
            Command::new("ldapadd").arg("-VV").output().is_ok(),
            "{}",
            install_hint("ldapadd", "ldap-utils")
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        std::fs::write(dir.path().join("slapd.conf"), slapd_conf(dir.path())).expect("conf");
        let mut slapd = Slapd {
            dir,
            port: free_port(),
            pid: None,
        };
        slapd.launch();
        slapd.add(&base_ldif());
        slapd
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn bind_dn(&self) -> &'static str {
        ADMIN_DN
    }

    pub fn bind_password(&self) -> &'static str {
        ADMIN_PW
    }

    /// `ldapadd` of an LDIF text; panics with slapd's message on failure.
    pub fn add(&self, ldif: &str) {
        self.ldap_tool("ldapadd", &[], ldif);
    }

    /// `ldapmodify` of an LDIF change text.
    pub fn modify(&self, ldif: &str) {
        self.ldap_tool("ldapmodify", &[], ldif);
    }

    /// `ldapdelete` of one DN.
    pub fn delete(&self, dn: &str) {
        self.ldap_tool("ldapdelete", &[dn], "");
    }

    /// SIGKILLs the server (the data directory stays).
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            wait_until(
                || !Path::new(&format!("/proc/{pid}")).exists(),
                "slapd to die",
            );
        }
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn launch(&mut self) {
        let conf = self.dir.path().join("slapd.conf");
        let status = Command::new(SLAPD)
            .arg("-f")
            .arg(&conf)
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{}/", self.port))
            .stdout(Stdio::null())
            .status()
            .expect("run slapd");
        assert!(status.success(), "slapd failed to start: {status}");
        let pidfile = self.pidfile();
        wait_until(
            || std::fs::read_to_string(&pidfile).is_ok_and(|t| !t.trim().is_empty()),
            "pidfile",
        );
        let pid = std::fs::read_to_string(&pidfile).expect("pidfile");
        self.pid = Some(pid.trim().parse().expect("pid"));
        let addr = format!("127.0.0.1:{}", self.port);
        wait_until(
            || std::net::TcpStream::connect(&addr).is_ok(),
            "slapd to listen",
        );
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("slapd.pid")
    }

    fn ldap_tool(&self, tool: &str, args: &[&str], stdin: &str) {
        use std::io::Write;
        let mut child = Command::new(tool)
            .args(["-x", "-H", &self.url(), "-D", ADMIN_DN, "-w", ADMIN_PW])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool}: {e}; {}", install_hint(tool, "ldap-utils")));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write ldif");
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_until(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn slapd_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint
sizelimit unlimited
database mdb
maxsize 1073741824
suffix \"{SUFFIX}\"
rootdn \"{ADMIN_DN}\"
rootpw {ADMIN_PW}
directory {d}/data
index objectClass eq
index uid,cn,member,uniqueMember,memberUid eq
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint true
overlay refint
refint_attributes member uniqueMember
"
    )
}

fn base_ldif() -> String {
    format!(
        "dn: {SUFFIX}
objectClass: top
objectClass: dcObject
objectClass: organization
o: Example Org
dc: example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups
"
    )
}
