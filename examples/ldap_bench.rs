//! LDAP poll benchmark (issue #5): a generated directory in a throwaway
//! slapd, read by `ldapsearch` (the floor) and polled by tyk-idsync into a
//! fresh SQLite store and a fresh PostgreSQL database.
//!
//! ```sh
//! cargo run --release --example ldap_bench -- \
//!     --users 50000 --groups 5000 --runs 3 \
//!     --postgres postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! or `BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/postgres
//! scripts/bench-ldap.sh`. Without `--postgres` only SQLite is measured.
//! `--postgres` names a server and a database to connect to first: each run
//! creates its own database there and drops it after. `--membership
//! member_of` writes each user's (and nested group's) `memberOf` into the
//! LDIF too and polls with `membership = "member_of"`. `--hold` keeps slapd
//! and the SQLite stores until Enter is pressed (for profiling a `child`).
//! Needs `slapd`, `slapadd` and `ldapsearch` (Debian: `slapd ldap-utils`).
//!
//! What it does:
//! 1. writes an LDIF of USERS `inetOrgPerson` entries (uid, cn, sn,
//!    givenName, mail) and GROUPS `groupOfNames` with 10–50 user members
//!    each, every tenth group also holding 1–3 other groups (acyclic); loads
//!    it offline with `slapadd -q` (which adds entryUUID) and starts slapd
//!    (mdb, memberof and refint overlays, as the tests do) on a loopback port;
//! 2. times `ldapsearch -E pr=500/noprompt` of the users then the groups,
//!    with the attributes the poller requests, output to /dev/null, after
//!    one unmeasured pass that warms slapd's caches, 3 × RUNS times (at
//!    least 5: its time varies much more than the poll's);
//! 3. times `read_directory` alone, then, per backend, a first full poll
//!    (`run_once(.., PollKind::Full, false)`, page size 500) into an empty
//!    store, a second full poll with nothing changed, and an incremental
//!    poll with nothing changed (`since` = now: no user changed; in
//!    `member_of` mode it still reads every user's `memberOf`).
//!
//! Each measurement runs in its own process (this binary, `child …`), which
//! reports its wall time and its peak RSS (`VmHWM`). slapd is killed and the
//! temporary directory removed at the end, also on failure.

use std::fmt::Write as _;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tyk_idsync::domain::{SourceName, Timestamp};
use tyk_idsync::ldap::config::{LdapSourceConfig, MembershipMode};
use tyk_idsync::ldap::poller::{PollKind, PollOptions, run_once, run_poll};
use tyk_idsync::ldap::read::read_directory;
use tyk_idsync::store::{Store, StoreOptions};

/// The same allocator as the service binary (`src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SUFFIX: &str = "dc=example,dc=org";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
const ADMIN_PW: &str = "admin";
const PAGE_SIZE: i32 = 500;
/// What the poller asks for (`read.rs`), users then groups.
const USER_ATTRS: &[&str] = &[
    "cn",
    "displayName",
    "entryUUID",
    "givenName",
    "mail",
    "memberOf",
    "nsAccountLock",
    "pwdAccountLockedTime",
    "sn",
    "uid",
    "userAccountControl",
];
const GROUP_ATTRS: &[&str] = &[
    "cn",
    "member",
    "uniqueMember",
    "memberUid",
    "memberOf",
    "entryUUID",
];

/// What one child process measured.
#[derive(Debug, Serialize, Deserialize)]
struct Sample {
    wall_s: f64,
    peak_rss_kb: u64,
    users: usize,
    groups: usize,
    /// User changes plus group changes (polls only).
    changes: usize,
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        let runtime = tokio::runtime::Runtime::new()?;
        let sample = runtime.block_on(child(&args[1..]))?;
        println!("{}", serde_json::to_string(&sample)?);
        return Ok(());
    }
    let options = Options::parse(&args)?;
    orchestrate(&options)
}

struct Options {
    users: usize,
    groups: usize,
    runs: usize,
    /// `group_attributes` (the default) or `member_of`.
    membership: String,
    postgres: Option<String>,
    /// Keep slapd and the SQLite stores until Enter is pressed (profiling).
    hold: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, BoxError> {
        let mut options = Options {
            users: 50_000,
            groups: 5_000,
            runs: 3,
            membership: "group_attributes".into(),
            postgres: None,
            hold: false,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or(format!("{flag} needs a value"));
            match flag.as_str() {
                "--users" => options.users = value()?.parse()?,
                "--groups" => options.groups = value()?.parse()?,
                "--runs" => options.runs = value()?.parse()?,
                "--membership" => options.membership = value()?.clone(),
                "--postgres" => options.postgres = Some(value()?.clone()),
                "--hold" => options.hold = true,
                other => {
                    return Err(format!(
                        "unknown argument {other}; usage: ldap_bench [--users N] \
                         [--groups N] [--runs N] [--membership group_attributes|member_of] \
                         [--postgres URL] [--hold]"
                    )
                    .into());
                }
            }
        }
        if options.groups < 2 || options.users < 50 || options.runs < 1 {
            return Err("need --users ≥ 50, --groups ≥ 2, --runs ≥ 1".into());
        }
        membership_mode(&options.membership)?;
        Ok(options)
    }
}

// ---------------------------------------------------------------- children

fn membership_mode(name: &str) -> Result<MembershipMode, BoxError> {
    match name {
        "group_attributes" => Ok(MembershipMode::GroupAttributes),
        "member_of" => Ok(MembershipMode::MemberOf),
        other => Err(format!("--membership {other}: group_attributes or member_of").into()),
    }
}

/// `child read LDAP_URL MEMBERSHIP` or `child poll|incremental LDAP_URL
/// MEMBERSHIP DATABASE_URL`.
async fn child(args: &[String]) -> Result<Sample, BoxError> {
    let (mode, ldap_url, membership) = match args {
        [mode, url, membership, ..] => (mode.as_str(), url.as_str(), membership.as_str()),
        _ => return Err("child MODE LDAP_URL MEMBERSHIP [DATABASE_URL]".into()),
    };
    let cfg = LdapSourceConfig {
        membership: membership_mode(membership)?,
        ..source_config(ldap_url)
    };
    let password = SecretString::from(ADMIN_PW.to_string());
    match mode {
        "read" => {
            let start = Instant::now();
            let read = read_directory(&cfg, &password, None).await?;
            let wall_s = start.elapsed().as_secs_f64();
            Ok(Sample {
                wall_s,
                peak_rss_kb: peak_rss_kb(),
                users: read.users.len(),
                groups: read.groups.len(),
                changes: 0,
            })
        }
        "poll" | "incremental" => {
            let db_url = args.get(3).ok_or("child poll needs a DATABASE_URL")?;
            let store = Store::connect(&StoreOptions::new(db_url.clone())).await?;
            store.migrate().await?;
            let source = SourceName::new("bench");
            let start = Instant::now();
            let report = if mode == "poll" {
                run_once(&store, &source, &cfg, &password, PollKind::Full, false).await?
            } else {
                // Users changed since now: none.
                let options = PollOptions {
                    kind: PollKind::Incremental,
                    force: false,
                    since: Some(Timestamp::now()),
                };
                run_poll(&store, &source, &cfg, &password, options).await?
            };
            let wall_s = start.elapsed().as_secs_f64();
            store.close().await;
            if report.held.is_some() {
                return Err(format!("poll held: {report:?}").into());
            }
            Ok(Sample {
                wall_s,
                peak_rss_kb: peak_rss_kb(),
                users: report.users_read,
                groups: report.groups_read,
                changes: report.changes + report.groups.changes(),
            })
        }
        other => Err(format!("unknown child mode {other}").into()),
    }
}

fn source_config(url: &str) -> LdapSourceConfig {
    LdapSourceConfig {
        url: url.to_string(),
        bind_dn: ADMIN_DN.into(),
        bind_password: Some(SecretString::from(ADMIN_PW.to_string())),
        user_base: format!("ou=people,{SUFFIX}"),
        group_base: format!("ou=groups,{SUFFIX}"),
        page_size: PAGE_SIZE,
        operation_timeout: Duration::from_secs(600),
        ..LdapSourceConfig::default()
    }
}

/// Peak resident set size of this process, from `/proc/self/status`.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

// ------------------------------------------------------------ orchestrator

fn orchestrate(options: &Options) -> Result<(), BoxError> {
    for tool in ["/usr/sbin/slapd", "slapadd", "ldapsearch"] {
        let found = if tool.starts_with('/') {
            Path::new(tool).exists()
        } else {
            Command::new("sh")
                .args([
                    "-c",
                    &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
                ])
                .stdout(Stdio::null())
                .status()?
                .success()
        };
        if !found {
            return Err(format!("{tool} not found: apt-get install -y slapd ldap-utils").into());
        }
    }
    let dir = tempfile::Builder::new().prefix("ldap-bench-").tempdir()?;
    let mut slapd = Slapd::new(dir.path())?;
    let ldif = dir.path().join("directory.ldif");
    let started = Instant::now();
    let with_member_of = options.membership == "member_of";
    let (members, nested) = write_ldif(&ldif, options.users, options.groups, with_member_of)?;
    eprintln!(
        "generated {} users, {} groups ({members} user members, {nested} nested groups) in {:.1}s",
        options.users,
        options.groups,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    slapd.load(&ldif)?;
    eprintln!("slapadd: {:.1}s", started.elapsed().as_secs_f64());
    std::fs::remove_file(&ldif)?;
    slapd.start()?;
    let url = slapd.url();
    let membership = options.membership.as_str();

    let mut rows: Vec<(String, Vec<Sample>)> = Vec::new();
    let floor = measure_ldapsearch(&url, options)?;
    rows.push(("ldapsearch users + groups (floor)".into(), floor));
    let mut reads = Vec::new();
    for _ in 0..options.runs {
        reads.push(run_child(&["read", &url, membership])?);
    }
    rows.push(("read_directory only".into(), reads));

    let mut backends = vec![Backend::Sqlite(dir.path().to_path_buf())];
    if let Some(admin) = &options.postgres {
        backends.push(Backend::Postgres(admin.clone()));
    }
    for backend in &backends {
        let (mut first, mut steady, mut incremental) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..options.runs {
            let db = backend.fresh(run)?;
            let result = (|| -> Result<(), BoxError> {
                let created = run_child(&["poll", &url, membership, db.url()])?;
                check(
                    &created,
                    options,
                    options.users,
                    options.users + options.groups + members + nested,
                )?;
                first.push(created);
                let unchanged = run_child(&["poll", &url, membership, db.url()])?;
                check(&unchanged, options, options.users, 0)?;
                steady.push(unchanged);
                let unchanged = run_child(&["incremental", &url, membership, db.url()])?;
                check(&unchanged, options, 0, 0)?;
                incremental.push(unchanged);
                Ok(())
            })();
            db.drop_it()?;
            result?;
        }
        let name = backend.name();
        rows.push((format!("full poll → {name}: first (all created)"), first));
        rows.push((
            format!("full poll → {name}: second (nothing changed)"),
            steady,
        ));
        rows.push((
            format!("incremental poll → {name}: nothing changed"),
            incremental,
        ));
    }
    print_table(options, &rows);
    if options.hold {
        eprintln!(
            "holding: slapd at {url}, SQLite stores in {}; press Enter to clean up",
            dir.path().display()
        );
        std::io::stdin().read_line(&mut String::new())?;
    }
    slapd.stop();
    Ok(())
}

/// A poll must have read `users` users (all, or none changed) and every
/// group, and made exactly `changes` changes.
fn check(sample: &Sample, options: &Options, users: usize, changes: usize) -> Result<(), BoxError> {
    if sample.users != users || sample.groups != options.groups {
        return Err(format!("poll read {sample:?}, expected all entries").into());
    }
    if sample.changes != changes {
        return Err(format!("poll made {} changes, expected {changes}", sample.changes).into());
    }
    Ok(())
}

fn run_child(args: &[&str]) -> Result<Sample, BoxError> {
    let out = Command::new(std::env::current_exe()?)
        .arg("child")
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("child {args:?} failed: {}", out.status).into());
    }
    let sample: Sample = serde_json::from_slice(&out.stdout)?;
    eprintln!(
        "  {} {:.2}s, peak RSS {} MB",
        args[0],
        sample.wall_s,
        sample.peak_rss_kb / 1024
    );
    Ok(sample)
}

/// `ldapsearch` of the users then the groups, paged like the poller.
fn measure_ldapsearch(url: &str, options: &Options) -> Result<Vec<Sample>, BoxError> {
    let search = |base: &str, filter: &str, attrs: &[&str]| -> Result<(), BoxError> {
        let status = Command::new("ldapsearch")
            .args(["-x", "-LLL", "-H", url, "-D", ADMIN_DN, "-w", ADMIN_PW])
            .args(["-E", &format!("pr={PAGE_SIZE}/noprompt"), "-s", "sub"])
            .args(["-b", base, filter])
            .args(attrs)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("ldapsearch {base} failed: {status}").into());
        }
        Ok(())
    };
    let cfg = LdapSourceConfig::default();
    let users_then_groups = || -> Result<(), BoxError> {
        search(&format!("ou=people,{SUFFIX}"), &cfg.user_filter, USER_ATTRS)?;
        search(
            &format!("ou=groups,{SUFFIX}"),
            &cfg.group_filter,
            GROUP_ATTRS,
        )
    };
    // One pass unmeasured: slapd has just started, and its caches (which
    // every later read, the poller's included, finds warm) are cold.
    users_then_groups()?;
    let mut samples = Vec::new();
    // ldapsearch's own time varies far more than the poll's (0.3–0.9 s on
    // one slapd within a minute), so its median needs more runs.
    for _ in 0..(3 * options.runs).max(5) {
        let start = Instant::now();
        users_then_groups()?;
        let wall_s = start.elapsed().as_secs_f64();
        eprintln!("  ldapsearch {wall_s:.2}s");
        samples.push(Sample {
            wall_s,
            peak_rss_kb: 0,
            users: options.users,
            groups: options.groups,
            changes: 0,
        });
    }
    Ok(samples)
}

fn print_table(options: &Options, rows: &[(String, Vec<Sample>)]) {
    let floor = median(&rows[0].1.iter().map(|s| s.wall_s).collect::<Vec<_>>());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} users, {} groups, membership = {}, page size {PAGE_SIZE}, {} run(s) each, \
         release build\n",
        options.users, options.groups, options.membership, options.runs
    );
    let _ = writeln!(
        out,
        "| measurement | wall, median (min–max) | × ldapsearch | peak RSS (max) |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for (name, samples) in rows {
        let walls: Vec<f64> = samples.iter().map(|s| s.wall_s).collect();
        let (lo, hi) = walls
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), w| (lo.min(*w), hi.max(*w)));
        let rss = samples.iter().map(|s| s.peak_rss_kb).max().unwrap_or(0);
        let rss = if rss == 0 {
            "–".to_string()
        } else {
            format!("{} MB", rss / 1024)
        };
        let m = median(&walls);
        let _ = writeln!(
            out,
            "| {name} | {m:.2} s ({lo:.2}–{hi:.2}) | {:.2}× | {rss} |",
            m / floor
        );
    }
    print!("{out}");
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

// ------------------------------------------------------------------ data

/// Writes the directory; returns (user member values, group member values).
/// With `member_of`, each user and nested group also carries the
/// `memberOf` values the overlay would have given it (slapadd runs no
/// overlay).
fn write_ldif(
    path: &Path,
    users: usize,
    groups: usize,
    member_of: bool,
) -> Result<(usize, usize), BoxError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    // Each group's user members and member groups, drawn first so the
    // users' memberOf can be written with the users.
    let mut lists: Vec<(Vec<usize>, Vec<usize>)> = Vec::with_capacity(groups);
    for g in 0..groups {
        let count = rng.gen_range(10..=50).min(users);
        let members = sample(&mut rng, users, count).into_vec();
        let mut nested = Vec::new();
        // Every tenth group also holds 1–3 groups later in the list: nesting
        // without cycles.
        if g % 10 == 0 && g + 1 < groups {
            let later = groups - g - 1;
            let count = rng.gen_range(1..=3).min(later);
            nested = sample(&mut rng, later, count)
                .into_iter()
                .map(|k| g + 1 + k)
                .collect();
        }
        lists.push((members, nested));
    }
    let mut user_groups: Vec<Vec<usize>> = vec![Vec::new(); if member_of { users } else { 0 }];
    let mut group_parents: Vec<Vec<usize>> = vec![Vec::new(); if member_of { groups } else { 0 }];
    if member_of {
        for (g, (members, nested)) in lists.iter().enumerate() {
            for n in members {
                user_groups[*n].push(g);
            }
            for k in nested {
                group_parents[*k].push(g);
            }
        }
    }
    let mut w = BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        w,
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example Org\n\
         dc: example\n\ndn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n"
    )?;
    for n in 0..users {
        write!(
            w,
            "dn: uid=user{n:06},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\n\
             uid: user{n:06}\ncn: Given{n} Family{n}\nsn: Family{n}\ngivenName: Given{n}\n\
             mail: user{n:06}@example.org\n"
        )?;
        for g in user_groups.get(n).into_iter().flatten() {
            writeln!(w, "memberOf: cn=group{g:05},ou=groups,{SUFFIX}")?;
        }
        writeln!(w)?;
    }
    let (mut members, mut nested) = (0, 0);
    for (g, (users_in, groups_in)) in lists.iter().enumerate() {
        writeln!(
            w,
            "dn: cn=group{g:05},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: group{g:05}"
        )?;
        for n in users_in {
            writeln!(w, "member: uid=user{n:06},ou=people,{SUFFIX}")?;
        }
        for k in groups_in {
            writeln!(w, "member: cn=group{k:05},ou=groups,{SUFFIX}")?;
        }
        for p in group_parents.get(g).into_iter().flatten() {
            writeln!(w, "memberOf: cn=group{p:05},ou=groups,{SUFFIX}")?;
        }
        members += users_in.len();
        nested += groups_in.len();
        writeln!(w)?;
    }
    w.flush()?;
    Ok((members, nested))
}

// ----------------------------------------------------------------- slapd

/// A throwaway slapd (same configuration as `tests/api/support/slapd.rs`).
struct Slapd {
    dir: PathBuf,
    port: u16,
    pid: Option<u32>,
}

impl Slapd {
    fn new(dir: &Path) -> Result<Self, BoxError> {
        std::fs::create_dir_all(dir.join("data"))?;
        let d = dir.display();
        std::fs::write(
            dir.join("slapd.conf"),
            format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 include /etc/ldap/schema/nis.schema\n\
                 pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\n\
                 modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\n\
                 moduleload refint\nsizelimit unlimited\ndatabase mdb\nmaxsize 4294967296\n\
                 suffix \"{SUFFIX}\"\nrootdn \"{ADMIN_DN}\"\nrootpw {ADMIN_PW}\n\
                 directory {d}/data\nindex objectClass eq\n\
                 index uid,cn,member,uniqueMember,memberUid eq\n\
                 overlay memberof\nmemberof-group-oc groupOfNames\nmemberof-member-ad member\n\
                 memberof-memberof-ad memberOf\nmemberof-refint true\n\
                 overlay refint\nrefint_attributes member uniqueMember\n"
            ),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Ok(Slapd {
            dir: dir.to_path_buf(),
            port,
            pid: None,
        })
    }

    fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Offline bulk load (generates entryUUID and the other operational
    /// attributes; overlays do not run, so memberOf is what the LDIF says).
    fn load(&self, ldif: &Path) -> Result<(), BoxError> {
        let out = Command::new("slapadd")
            .arg("-q")
            .arg("-f")
            .arg(self.dir.join("slapd.conf"))
            .arg("-l")
            .arg(ldif)
            .output()?;
        if !out.status.success() {
            return Err(format!("slapadd: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(), BoxError> {
        let status = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(self.dir.join("slapd.conf"))
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{}/", self.port))
            .status()?;
        if !status.success() {
            return Err(format!("slapd failed to start: {status}").into());
        }
        let pidfile = self.dir.join("slapd.pid");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.pid.is_none() {
                self.pid = std::fs::read_to_string(&pidfile)
                    .ok()
                    .and_then(|t| t.trim().parse().ok());
            }
            if self.pid.is_some() && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("slapd did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

// -------------------------------------------------------------- databases

/// Where the polls write: SQLite files in a directory, or new databases
/// on a PostgreSQL server (connecting first to the given URL).
enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    /// An empty store for run `run`.
    fn fresh(&self, run: usize) -> Result<Database, BoxError> {
        match self {
            Backend::Sqlite(dir) => Ok(Database::Sqlite(format!(
                "sqlite://{}/store-{run}.db",
                dir.display()
            ))),
            Backend::Postgres(admin) => Database::create(admin, run),
        }
    }
}

/// The store of one run: a SQLite file, or a PostgreSQL database created
/// for it and dropped after.
enum Database {
    Sqlite(String),
    Postgres {
        admin: String,
        name: String,
        url: String,
    },
}

impl Database {
    fn create(admin: &str, run: usize) -> Result<Self, BoxError> {
        let name = format!("tyk_idsync_ldap_bench_{}_{run}", std::process::id());
        admin_sql(admin, &format!("CREATE DATABASE {name}"))?;
        let mut url = url::Url::parse(admin)?;
        url.set_path(&format!("/{name}"));
        Ok(Database::Postgres {
            admin: admin.to_string(),
            name,
            url: url.to_string(),
        })
    }

    fn url(&self) -> &str {
        match self {
            Database::Sqlite(url) => url,
            Database::Postgres { url, .. } => url,
        }
    }

    fn drop_it(&self) -> Result<(), BoxError> {
        match self {
            Database::Sqlite(_) => Ok(()),
            Database::Postgres { admin, name, .. } => admin_sql(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ),
        }
    }
}

fn admin_sql(admin: &str, sql: &str) -> Result<(), BoxError> {
    use sqlx::{Connection, Executor};
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(admin).await?;
        conn.execute(sql).await?;
        conn.close().await?;
        Ok::<_, BoxError>(())
    })
}
