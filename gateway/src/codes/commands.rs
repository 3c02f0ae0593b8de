//! GenerateCodes, ReserveCodes, AssignCode, LinkControlNumber over HTTP. The requests are read
//! here; the commands run in the application layer (`careledger_app::codes`), as they would from
//! any other transport.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use careledger_app::codes::{Codes, GenerateInput, ReserveInput};

use crate::auth::User;
use crate::handler::{command_ctx, counted};
use crate::http::body::{Fields, JsonBody};
use crate::http::envelope::{ApiError, Envelope};
use crate::state::AppState;

/// The codes context as the application layer runs it, on this server's services.
fn codes(state: &AppState) -> Codes<'_> {
    Codes {
        store: &state.store,
        projections: &state.projections,
        batches: &state.batches,
        format: &state.config.code_format,
        query_wait: state.config.query_wait,
    }
}

/// `POST /api/v1/code-batches`
pub async fn generate(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("GenerateCodes", async {
        let ctx = command_ctx(&state, "GenerateCodes", &user, &headers, "/api/v1/code-batches", &bytes)?;
        let mut f = Fields::new(&body);
        f.only(&["holder_type", "holder_code", "number"]);
        let holder_type = f.holder_type("holder_type");
        let holder_code = f.string("holder_code", true, 50);
        let number = f.integer("number", false, 1, state.config.codes_max_number.into());
        let number = number.map(|n| n as u32).unwrap_or(state.config.codes_default_number);
        let input =
            f.finish_with(|| Some(GenerateInput { holder_type: holder_type?, holder_code: holder_code?, number }))?;
        Ok(codes(&state).generate(&ctx, input).await?.into())
    })
    .await
}

/// `POST /api/v1/codes/reservations`
pub async fn reserve(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("ReserveCodes", async {
        let ctx = command_ctx(&state, "ReserveCodes", &user, &headers, "/api/v1/codes/reservations", &bytes)?;
        let mut f = Fields::new(&body);
        f.only(&["holder_type", "holder_code", "number", "batch_id", "for_server"]);
        let holder_type = f.holder_type("holder_type");
        let holder_code = f.string("holder_code", true, 50);
        let number = f.integer("number", true, 1, state.config.codes_max_number.into());
        let batch_id = f.uuid("batch_id", false);
        let for_server = f.system_uri("for_server", false);
        let input = f.finish_with(|| {
            Some(ReserveInput {
                holder_type: holder_type?,
                holder_code: holder_code?,
                number: number? as usize,
                batch_id,
                for_server,
            })
        })?;
        Ok(codes(&state).reserve(&ctx, input).await?.into())
    })
    .await
}

/// `POST /api/v1/codes/{code}/assignment`
pub async fn assign(
    State(state): State<AppState>,
    Path(code): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("AssignCode", async {
        let path = format!("/api/v1/codes/{code}/assignment");
        let ctx = command_ctx(&state, "AssignCode", &user, &headers, &path, &bytes)?;
        let mut f = Fields::new(&body);
        f.only(&["insuree_id", "json_ext"]);
        let insuree_id = f.string("insuree_id", true, 100);
        let json_ext = f.object("json_ext");
        let insuree_id = f.finish_with(|| insuree_id)?;
        Ok(codes(&state).assign(&ctx, &code, insuree_id, json_ext).await?.into())
    })
    .await
}

/// `POST /api/v1/codes/{code}/control-number`
pub async fn link_control_number(
    State(state): State<AppState>,
    Path(code): Path<String>,
    user: User,
    headers: HeaderMap,
    JsonBody(body, bytes): JsonBody,
) -> Result<Envelope, ApiError> {
    counted("LinkControlNumber", async {
        let path = format!("/api/v1/codes/{code}/control-number");
        let ctx = command_ctx(&state, "LinkControlNumber", &user, &headers, &path, &bytes)?;
        let mut f = Fields::new(&body);
        f.only(&["control_number"]);
        let control_number = f.string("control_number", true, 50);
        let control_number = f.finish_with(|| control_number)?;
        Ok(codes(&state).link_control_number(&ctx, &code, control_number).await?.into())
    })
    .await
}
