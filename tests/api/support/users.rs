//! A builder for users, so that a test says who it adds and who adds them:
//! `app.user("jane@example.com").role(Agent).try_create().await`, or
//! `app.user(&email).without_password().by(&agent).try_create().await` for a refusal.
//! Anything left unsaid is valid: a customer with the test password, added by the admin.
//! (`TestApp::add_user` also logs the new user in, for tests that then act as them.)

use supportdesk::wire::proto::v1;
use tonic::Status;

use super::{TEST_PASSWORD, TestApp, TestUser};

/// A CreateUser call in the making.
pub(crate) struct UserBuilder<'a> {
    app: &'a TestApp,
    caller: &'a TestUser,
    user: v1::User,
    password: String,
}

impl TestApp {
    /// A customer with the address `email` and the test password, added by the admin until told
    /// otherwise.
    pub(crate) fn user(&self, email: &str) -> UserBuilder<'_> {
        UserBuilder {
            app: self,
            caller: &self.admin,
            user: v1::User {
                email: email.to_owned(),
                role: v1::UserRole::Customer.into(),
                ..Default::default()
            },
            password: TEST_PASSWORD.to_owned(),
        }
    }
}

impl<'a> UserBuilder<'a> {
    pub(crate) fn role(mut self, role: v1::UserRole) -> Self {
        self.user.role = role.into();
        self
    }

    pub(crate) fn display_name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.user.display_name);
        self
    }

    /// Invited rather than given a password: they set one through the mailed link.
    pub(crate) fn without_password(mut self) -> Self {
        self.password.clear();
        self
    }

    /// Added by `caller` rather than the admin.
    pub(crate) fn by(mut self, caller: &'a TestUser) -> Self {
        self.caller = caller;
        self
    }

    /// The request as it would be sent, for a test that sends it its own way.
    pub(crate) fn request(self) -> v1::CreateUserRequest {
        v1::CreateUserRequest {
            user: Some(self.user),
            password: self.password,
        }
    }

    /// Tries to add the user: for a test about what is refused.
    pub(crate) async fn try_create(self) -> Result<v1::User, Status> {
        let (app, caller) = (self.app, self.caller);
        app.users
            .clone()
            .create_user(caller.request(self.request()))
            .await
            .map(tonic::Response::into_inner)
    }
}
