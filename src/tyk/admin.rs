//! The Admin API half of the client (`admin-auth` header): users in a given
//! organisation and organisations. Upstream has no list-users and no
//! delete-user endpoint here.

use reqwest::Method;

use super::client::{Auth, TykClient};
use super::error::TykError;
use super::model::{NewOrganisation, NewUser, Organisation, OrgsList, User};
use super::transport::{meta_id, meta_user};

/// The Admin API (`admin-auth`): users in a given org, organisations.
#[derive(Debug, Clone, Copy)]
pub struct AdminClient<'a> {
    pub(super) client: &'a TykClient,
}

impl AdminClient<'_> {
    /// Creates a user (with `org_id`, or unbounded without); returns the
    /// stored user, including its `access_key`.
    pub async fn create_user(&self, user: &NewUser) -> Result<User, TykError> {
        let mut body = user.clone();
        body.email_address = body.email_address.to_lowercase();
        let env = self
            .client
            .send_envelope(Method::POST, Auth::Admin, &["admin", "users"], Some(&body))
            .await?;
        meta_user(env)
    }

    pub async fn get_user(&self, id: &str) -> Result<User, TykError> {
        self.client
            .get_json(Auth::Admin, &["admin", "users", id], None)
            .await
    }

    pub async fn update_user(&self, user: &User) -> Result<User, TykError> {
        let path = ["admin", "users", user.id.as_str()];
        let env = self
            .client
            .send_envelope(Method::PUT, Auth::Admin, &path, Some(user))
            .await?;
        meta_user(env)
    }

    pub async fn list_organisations(&self) -> Result<Vec<Organisation>, TykError> {
        // The spec declares no paging here, but tyk-demo sends p=-1.
        let list: OrgsList = self
            .client
            .get_json(Auth::Admin, &["admin", "organisations"], Some(-1))
            .await?;
        Ok(list.organisations.unwrap_or_default())
    }

    pub async fn get_organisation(&self, id: &str) -> Result<Organisation, TykError> {
        self.client
            .get_json(Auth::Admin, &["admin", "organisations", id], None)
            .await
    }

    pub async fn create_organisation(&self, org: &NewOrganisation) -> Result<String, TykError> {
        let env = self
            .client
            .send_envelope(
                Method::POST,
                Auth::Admin,
                &["admin", "organisations"],
                Some(org),
            )
            .await?;
        meta_id(env)
    }
}
