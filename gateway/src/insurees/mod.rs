//! Enrolment over HTTP: register an insuree with a code reserved to who enrols them, and enrol an
//! insuree in a policy. The commands run in the application layer (`careledger_app::insurees`),
//! as they would from NATS or a sync.
//!
//! These are the enrolment officer's and health facility's commands, on the central server or an
//! offline node; `POST /api/v1/insurees` and `/api/v1/policies` stay the integration's reference
//! upserts of insurees and policies enrolled elsewhere.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use careledger_app::insurees::{EnrolInput, Holder, Insurees, RegisterInput};
use careledger_events::claims::Gender;

use crate::auth::User;
use crate::handler::{command_ctx, counted};
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/enrolment/insurees", post(register)).route("/api/v1/enrolment/policies", post(enrol))
}

/// The enrolment context as the application layer runs it, on this server's services.
fn insurees(state: &AppState) -> Insurees<'_> {
    Insurees {
        store: &state.store,
        projections: &state.projections,
        batches: &state.batches,
        query_wait: state.config.query_wait,
    }
}

/// `POST /api/v1/enrolment/insurees`
pub async fn register(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("RegisterInsuree", async {
        let ctx = command_ctx(&state, "RegisterInsuree", &user, &headers, "/api/v1/enrolment/insurees", &bytes)?;
        let mut f = Fields::new(&body);
        f.only(&[
            "insuree_id",
            "last_name",
            "other_names",
            "birth_date",
            "gender",
            "phone",
            "family_head",
            "location",
            "holder_type",
            "holder_code",
        ]);
        let insuree_id = f.uuid("insuree_id", false);
        let last_name = f.string("last_name", true, 100);
        let other_names = f.string("other_names", true, 100);
        let birth_date = f.date("birth_date", true);
        let gender = f.one_of("gender", true, Gender::from_name, &Gender::names());
        let phone = f.string("phone", false, 50);
        let family_head = f.uuid("family_head", false);
        let location = f.string("location", false, 50);
        let holder = match (body.contains_key("holder_type"), body.contains_key("holder_code")) {
            (false, false) => None,
            _ => {
                let holder_type = f.holder_type("holder_type");
                let code = f.string("holder_code", true, 50);
                holder_type.zip(code).map(|(holder_type, code)| Holder { holder_type, code })
            }
        };
        let input = f.finish_with(|| {
            Some(RegisterInput {
                insuree_id,
                last_name: last_name?,
                other_names: other_names?,
                birth_date: birth_date?,
                gender: gender?,
                phone,
                family_head,
                location,
                holder,
            })
        })?;
        Ok(insurees(&state).register(&ctx, &user, input).await?.into())
    })
    .await
}

/// `POST /api/v1/enrolment/policies`
pub async fn enrol(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("EnrolInPolicy", async {
        let ctx = command_ctx(&state, "EnrolInPolicy", &user, &headers, "/api/v1/enrolment/policies", &bytes)?;
        let mut f = Fields::new(&body);
        f.only(&["policy_id", "insuree_id", "product_code", "enrol_date", "effective_date", "expiry_date"]);
        let policy_id = f.uuid("policy_id", false);
        let insuree_id = f.uuid("insuree_id", true);
        let product_code = f.string("product_code", true, 50);
        let enrol_date = f.date("enrol_date", true);
        let effective_date = f.date("effective_date", false);
        let expiry_date = f.date("expiry_date", true);
        let input = f.finish_with(|| {
            let enrol_date = enrol_date?;
            Some(EnrolInput {
                policy_id,
                insuree_id: insuree_id?,
                product_code: product_code?,
                enrol_date,
                effective_date: effective_date.unwrap_or(enrol_date),
                expiry_date: expiry_date?,
            })
        })?;
        Ok(insurees(&state).enrol(&ctx, input).await?.into())
    })
    .await
}
