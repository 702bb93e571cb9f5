//! JSON stored in TEXT columns (scopes, properties, spawner state, ...), as JupyterHub stores it.
//!
//! Reading: row structs declare typed fields with `#[diesel(deserialize_as = JsonText<T>)]`, so a
//! malformed value surfaces as a deserialization error instead of a silent default. Writing:
//! model functions serialise with [`to_json`] before building the insertable row (diesel's
//! SQLite binder borrows its values, so a `ToSql` that serialises on the fly cannot work).

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::sql_types::Text;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A JSON value read from a TEXT column.
#[derive(Debug, Clone, PartialEq, FromSqlRow)]
pub struct JsonText<T>(pub T);

impl<T, DB> FromSql<Text, DB> for JsonText<T>
where
    T: DeserializeOwned,
    DB: Backend,
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        let text = String::from_sql(bytes)?;
        Ok(JsonText(serde_json::from_str(&text)?))
    }
}

impl From<JsonText<Vec<String>>> for Vec<String> {
    fn from(value: JsonText<Vec<String>>) -> Self {
        value.0
    }
}

impl From<JsonText<Map<String, Value>>> for Map<String, Value> {
    fn from(value: JsonText<Map<String, Value>>) -> Self {
        value.0
    }
}

/// Serialises a value for a JSON TEXT column.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> diesel::QueryResult<String> {
    serde_json::to_string(value).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}
