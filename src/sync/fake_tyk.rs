//! An in-memory Tyk for applier and worker unit tests, with fault injection.
//! (The HTTP stand-in in `src/standin/` is what end-to-end tests use.)

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use super::actual::{ActualGroup, ActualState, ActualUser};
use super::writer::{GroupRecord, TykWriter, UserRecord, WriteError};

#[derive(Debug, Default)]
pub struct FakeState {
    pub users: BTreeMap<String, ActualUser>,
    pub groups: BTreeMap<String, ActualGroup>,
    next_id: u64,
    /// Errors returned (without applying) by the next write calls.
    pub faults: VecDeque<WriteError>,
    /// Errors returned by the next reads (`find_user_by_email`, `read_groups`).
    pub read_faults: VecDeque<WriteError>,
    /// Creations that succeed in Tyk but whose answer is lost (timeout).
    pub lose_create_answers: usize,
    /// Writes touching this e-mail fail permanently.
    pub refuse_email: Option<String>,
    /// Writes touching this e-mail are refused as Tyk refuses bad data
    /// (400 `User object validation failed.`: the person is quarantined).
    pub refuse_data_of: Option<String>,
    /// Every write call, e.g. `create_user ada@x.io`.
    pub writes: Vec<String>,
    pub reads: usize,
    /// Share of writes answered 500 or 429 (with `Retry-After`) at random.
    pub random_fault_rate: f64,
    /// Share of creations applied whose answer is lost (a timeout).
    pub random_lost_answer_rate: f64,
    /// Each call waits up to this long first.
    pub max_latency: Duration,
}

#[derive(Debug, Default)]
pub struct FakeTyk {
    pub state: Mutex<FakeState>,
}

pub fn retryable(retry_after_ms: Option<u64>) -> WriteError {
    WriteError::Retryable {
        message: "HTTP 503".into(),
        retry_after: retry_after_ms.map(Duration::from_millis),
    }
}

impl FakeTyk {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake tyk lock")
    }

    pub fn actual(&self) -> ActualState {
        let state = self.lock();
        ActualState {
            users: state.users.values().cloned().collect(),
            groups: state.groups.values().cloned().collect(),
        }
    }

    pub fn add_user(&self, user: ActualUser) {
        self.lock().users.insert(user.id.clone(), user);
    }

    async fn latency(&self) {
        let max = self.lock().max_latency;
        if !max.is_zero() {
            let wait = rand::Rng::gen_range(&mut rand::thread_rng(), Duration::ZERO..=max);
            tokio::time::sleep(wait).await;
        }
    }

    fn lose_this_answer(state: &mut FakeState) -> bool {
        if state.lose_create_answers > 0 {
            state.lose_create_answers -= 1;
            return true;
        }
        rand::Rng::gen_bool(&mut rand::thread_rng(), state.random_lost_answer_rate)
    }

    /// Records a write and decides whether it fails before being applied.
    fn begin_write(&self, what: String, email: Option<&str>) -> Result<(), WriteError> {
        let mut state = self.lock();
        state.writes.push(what);
        if let Some(fault) = state.faults.pop_front() {
            return Err(fault);
        }
        let mut rng = rand::thread_rng();
        if rand::Rng::gen_bool(&mut rng, state.random_fault_rate) {
            return Err(if rand::Rng::gen_bool(&mut rng, 0.5) {
                retryable(Some(2))
            } else {
                retryable(None)
            });
        }
        if email.is_some() && state.refuse_email.as_deref() == email {
            return Err(WriteError::Permanent {
                status: Some(400),
                message: "refused".into(),
            });
        }
        if email.is_some() && state.refuse_data_of.as_deref() == email {
            return Err(WriteError::Refused {
                status: 400,
                message: "User object validation failed.".into(),
            });
        }
        Ok(())
    }

    fn new_id(state: &mut FakeState) -> String {
        state.next_id += 1;
        format!("{:024x}", 0xabc000 + state.next_id)
    }
}

impl TykWriter for FakeTyk {
    async fn create_group(&self, group: &GroupRecord) -> Result<String, WriteError> {
        self.latency().await;
        self.begin_write(format!("create_group {}", group.name), None)?;
        let mut state = self.lock();
        let id = Self::new_id(&mut state);
        state.groups.insert(
            id.clone(),
            ActualGroup {
                id: id.clone(),
                org_id: group.org_id.clone(),
                name: group.name.clone(),
                description: group.description.clone(),
                permissions: group.permissions.clone(),
            },
        );
        Ok(id)
    }

    async fn update_group(&self, group_id: &str, group: &GroupRecord) -> Result<(), WriteError> {
        self.latency().await;
        self.begin_write(format!("update_group {}", group.name), None)?;
        let mut state = self.lock();
        let existing = state
            .groups
            .get_mut(group_id)
            .ok_or(WriteError::Permanent {
                status: Some(400),
                message: "Group ID does not exist".into(),
            })?;
        existing.permissions = group.permissions.clone();
        existing.description = group.description.clone();
        Ok(())
    }

    async fn delete_group(&self, _org_id: &str, group_id: &str) -> Result<(), WriteError> {
        self.latency().await;
        self.begin_write(format!("delete_group {group_id}"), None)?;
        self.lock().groups.remove(group_id);
        Ok(())
    }

    async fn create_user(&self, user: &UserRecord) -> Result<String, WriteError> {
        self.latency().await;
        self.begin_write(format!("create_user {}", user.email), Some(&user.email))?;
        let mut state = self.lock();
        let email = user.email.to_lowercase();
        if state
            .users
            .values()
            .any(|u| u.org_id == user.org_id && u.email == email)
        {
            return Err(WriteError::EmailAlreadyExists);
        }
        if user.permissions.is_empty() {
            return Err(WriteError::Permanent {
                status: Some(400),
                message: "no permissions".into(),
            });
        }
        let id = Self::new_id(&mut state);
        state.users.insert(id.clone(), record_to_user(&id, user));
        if Self::lose_this_answer(&mut state) {
            return Err(retryable(None));
        }
        Ok(id)
    }

    async fn update_user(&self, user_id: &str, user: &UserRecord) -> Result<(), WriteError> {
        self.latency().await;
        self.begin_write(format!("update_user {}", user.email), Some(&user.email))?;
        let mut state = self.lock();
        if !state.users.contains_key(user_id) {
            return Err(WriteError::Permanent {
                status: Some(400),
                message: "user does not exist.".into(),
            });
        }
        state
            .users
            .insert(user_id.to_string(), record_to_user(user_id, user));
        Ok(())
    }

    async fn delete_user(&self, _org_id: &str, user_id: &str) -> Result<(), WriteError> {
        self.latency().await;
        self.begin_write(format!("delete_user {user_id}"), None)?;
        self.lock().users.remove(user_id);
        Ok(())
    }

    async fn reset_user_key(&self, _org_id: &str, user_id: &str) -> Result<(), WriteError> {
        self.latency().await;
        self.begin_write(format!("reset_user_key {user_id}"), None)?;
        if self.lock().users.contains_key(user_id) {
            Ok(())
        } else {
            Err(WriteError::Permanent {
                status: Some(404),
                message: "Could not retrieve user detail.".into(),
            })
        }
    }

    async fn find_user_by_email(
        &self,
        org_id: &str,
        email: &str,
    ) -> Result<Option<ActualUser>, WriteError> {
        self.latency().await;
        let mut state = self.lock();
        state.reads += 1;
        if let Some(fault) = state.read_faults.pop_front() {
            return Err(fault);
        }
        Ok(state
            .users
            .values()
            .find(|u| u.org_id == org_id && u.email == email.to_lowercase())
            .cloned())
    }

    async fn read_groups(&self, org_id: &str) -> Result<Option<Vec<ActualGroup>>, WriteError> {
        self.latency().await;
        let mut state = self.lock();
        state.reads += 1;
        if let Some(fault) = state.read_faults.pop_front() {
            return Err(fault);
        }
        Ok(Some(
            state
                .groups
                .values()
                .filter(|g| g.org_id == org_id)
                .cloned()
                .collect(),
        ))
    }
}

fn record_to_user(id: &str, user: &UserRecord) -> ActualUser {
    ActualUser {
        id: id.to_string(),
        org_id: user.org_id.clone(),
        email: user.email.to_lowercase(),
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
        active: user.active,
        group_id: user.group_id.clone(),
        is_admin: ActualUser::permissions_mean_admin(&user.permissions),
        permissions: user.permissions.clone(),
    }
}
