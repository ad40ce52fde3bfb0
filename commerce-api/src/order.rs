//! Orders: the request body, its checks, and the order the API answers with.

use serde::{Deserialize, Serialize};

/// Most line items in one order.
pub const MAX_ITEMS: usize = 100;
/// Most units of one product in one line item.
pub const MAX_QUANTITY: u32 = 10_000;
/// Longest user id, product id or idempotency key, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// `POST /api/v1/orders` body, as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Who orders.
    pub user_id: String,
    /// What: at least one line.
    pub items: Vec<Item>,
    /// Makes a retried request answer with the first one's order.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// A catalog product id.
    pub product_id: String,
    /// Units, 1 to [`MAX_QUANTITY`].
    pub quantity: u32,
    /// Unit price in won the client saw; it must match the catalog's.
    pub price: u64,
}

/// A request the API refuses with 400, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON path of the field (`items[0].quantity`); empty for the body.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl NewOrder {
    /// Parses and checks a request body.
    pub fn parse(body: &[u8]) -> Result<NewOrder, Invalid> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let order: NewOrder = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.to_string();
            // serde names a missing field only in its message; the path is
            // the object that lacks it.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next());
            let field = match (missing, path.as_str()) {
                (Some(name), ".") => name.to_owned(),
                (Some(name), parent) => format!("{parent}.{name}"),
                (None, ".") => String::new(),
                (None, p) => p.to_owned(),
            };
            let syntax = matches!(
                inner.classify(),
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof
            );
            if syntax {
                return Invalid {
                    field: String::new(),
                    reason: format!("the body is not JSON: {message}"),
                };
            }
            let reason = strip_position(&message);
            Invalid { field, reason }
        })?;
        de.end().map_err(|e| Invalid {
            field: String::new(),
            reason: format!("the body is not one JSON object: {e}"),
        })?;
        order.check()?;
        Ok(order)
    }

    fn check(&self) -> Result<(), Invalid> {
        id("user_id", &self.user_id)?;
        if let Some(key) = &self.idempotency_key {
            id("idempotency_key", key)?;
        }
        if self.items.is_empty() {
            return Err(invalid("items", "must hold at least one item"));
        }
        if self.items.len() > MAX_ITEMS {
            return Err(invalid(
                "items",
                format!("holds {} items; at most {MAX_ITEMS}", self.items.len()),
            ));
        }
        for (i, item) in self.items.iter().enumerate() {
            id(&format!("items[{i}].product_id"), &item.product_id)?;
            if !(1..=MAX_QUANTITY).contains(&item.quantity) {
                return Err(invalid(
                    format!("items[{i}].quantity"),
                    format!("is {}; must be 1 to {MAX_QUANTITY}", item.quantity),
                ));
            }
            if item.price == 0 || i64::try_from(item.price).is_err() {
                return Err(invalid(
                    format!("items[{i}].price"),
                    format!("is {}; must be a positive number of won", item.price),
                ));
            }
        }
        Ok(())
    }

    /// What makes two requests with one idempotency key the same request:
    /// the user and the lines, not the JSON's spelling or key order.
    pub fn fingerprint(&self) -> i64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(self.user_id.as_bytes());
        h.update(&[0]);
        for item in &self.items {
            h.update(item.product_id.as_bytes());
            h.update(&[0]);
            h.update(&item.quantity.to_le_bytes());
            h.update(&item.price.to_le_bytes());
        }
        // SQLite integers are signed; the bits are what matter.
        h.digest() as i64
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn id(field: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(invalid(
            field,
            format!("must be 1 to {MAX_ID_LEN} bytes long"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(invalid(field, "holds a control character"));
    }
    Ok(())
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// An order as stored and answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Time-ordered UUID (v7).
    pub id: String,
    /// Who ordered.
    pub user_id: String,
    /// What.
    pub items: Vec<Item>,
    /// Sum of quantity × price, in won.
    pub total_krw: i64,
    /// Always `KRW`.
    pub currency: String,
    /// The key the order was placed with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When it was placed (RFC 3339, UTC).
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> String {
        NewOrder::parse(body.as_bytes()).unwrap_err().field
    }

    #[test]
    fn bad_bodies_name_their_field() {
        let ok = r#"{"user_id":"u1","items":[{"product_id":"PROD001","quantity":2,"price":2690000}],"idempotency_key":"k"}"#;
        let order = NewOrder::parse(ok.as_bytes()).unwrap();
        assert_eq!(order.items[0].quantity, 2);
        assert_eq!(field_of(r#"{"items":[]}"#), "user_id");
        assert_eq!(field_of(r#"{"user_id":"u","items":[]}"#), "items");
        assert_eq!(
            field_of(r#"{"user_id":"u","items":[{"product_id":"P","quantity":0,"price":1}]}"#),
            "items[0].quantity"
        );
        assert_eq!(
            field_of(r#"{"user_id":"u","items":[{"product_id":"P","quantity":"x","price":1}]}"#),
            "items[0].quantity"
        );
        assert_eq!(
            field_of(r#"{"user_id":"u","items":[{"product_id":"P","quantity":1}]}"#),
            "items[0].price"
        );
        assert_eq!(
            field_of(
                r#"{"user_id":"u","items":[{"product_id":"P","quantity":1,"price":1,"card":"4111"}]}"#
            ),
            "items[0].card"
        );
        assert_eq!(
            field_of(r#"{"user_id":"","items":[{"product_id":"P","quantity":1,"price":1}]}"#),
            "user_id"
        );
        let e = NewOrder::parse(b"{not json").unwrap_err();
        assert_eq!(e.field, "");
        assert!(e.reason.contains("not JSON"), "{}", e.reason);
    }

    #[test]
    fn the_fingerprint_ignores_spelling_but_not_content() {
        let a = NewOrder::parse(br#"{"user_id":"u","items":[{"product_id":"P","quantity":1,"price":5}],"idempotency_key":"k"}"#).unwrap();
        let b = NewOrder::parse(br#"{ "idempotency_key":"k", "items":[{"price":5,"quantity":1,"product_id":"P"}], "user_id":"u" }"#).unwrap();
        let c = NewOrder::parse(br#"{"user_id":"u","items":[{"product_id":"P","quantity":2,"price":5}],"idempotency_key":"k"}"#).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
