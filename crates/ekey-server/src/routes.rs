//! Routes outside the OpenAPI document (pages, CA files, OCSP) are added through
//! [`Routes`], which records each method and path as it goes into the router. Together with
//! the OpenAPI document that gives the whole surface of an instance
//! ([`crate::api::route_list`]); the authorisation test walks it and fails on a route it has
//! no expectation for.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{get, post};

use crate::state::AppState;

/// A router that remembers what it serves.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    list: Vec<(Method, &'static str)>,
}

impl Routes {
    /// No routes yet.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// `GET path` (and HEAD) served by `handler`.
    pub fn get<H, T>(mut self, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, get(handler));
        self.list.push((Method::GET, path));
        self
    }

    /// `POST path` served by `handler`.
    pub fn post<H, T>(mut self, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, post(handler));
        self.list.push((Method::POST, path));
        self
    }

    /// Both sets together.
    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.list.extend(other.list);
        self
    }

    /// The router and the list of what it serves.
    pub fn into_parts(self) -> (Router<AppState>, Vec<(Method, &'static str)>) {
        (self.router, self.list)
    }
}
