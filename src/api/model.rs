//! The CEC API's wire types, as `cec-api.md` documents them. Shared by the client and the
//! simulator, so both ends agree on paths, headers and JSON shapes by construction.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `POST` here with [`TokenRequest`] to get a bearer token.
pub const TOKEN_PATH: &str = "/apigovernance/api/oauth/tokenByAkSk";
/// `POST` here with [`LookupRequest`] and `Authorization: Bearer <token>`.
pub const LOOKUP_PATH: &str = "/apiaccess/rest/workbench/v1/queryCallInfoByCallId";
/// Request header asking for a token lifetime in seconds.
pub const TOKEN_EXPIRE_HEADER: &str = "X-Token-Expire";
/// Optional request header carrying the app key on lookups.
pub const APP_KEY_HEADER: &str = "X-APP-Key";
/// The platform caps token lifetimes at one hour.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 3600;
/// The lifetime the platform grants when `X-Token-Expire` is absent.
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 600;

/// Body of the token request. `Cow` lets the client borrow and the simulator own.
#[derive(Serialize, Deserialize)]
pub struct TokenRequest<'a> {
    #[serde(borrow)]
    pub app_key: Cow<'a, str>,
    #[serde(borrow)]
    pub app_secret: Cow<'a, str>,
}

/// Answer of the token request. `Expires` and `CreateTime` are strings holding integers.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub apply_type: String,
    #[serde(default)]
    pub create_time: String,
    pub expires: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub app_key: String,
    #[serde(default, rename = "UserID")]
    pub user_id: String,
}

/// Body of a lookup: all four fields mandatory, all strings.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LookupRequest<'a> {
    #[serde(borrow)]
    pub call_id: Cow<'a, str>,
    #[serde(borrow)]
    pub user_id: Cow<'a, str>,
    #[serde(borrow)]
    pub tenant_id: Cow<'a, str>,
    #[serde(borrow)]
    pub agent_id: Cow<'a, str>,
}

/// Answer of a lookup, every field optional. Fields are kept as raw JSON text so that a
/// phone number of any length keeps its exact digits: nothing here passes through `f64`.
/// The client interprets them (`api::client`); the simulator writes them verbatim.
#[derive(Serialize, Deserialize, Default, Debug)]
#[serde(default, rename_all = "camelCase")]
pub struct LookupAnswer<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub caller: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub called: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub media_ability: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub calldata: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub call_skill_id: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub call_skill: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub call_type: Option<&'a RawValue>,
    /// The status fields other CEC APIs answer with (`../shared/cec-api.md` section 3): a
    /// failure code there is the platform's refusal, never "no such call".
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub return_code: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub result_code: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub result_desc: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub result_message: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub retcode: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a RawValue>,
}
