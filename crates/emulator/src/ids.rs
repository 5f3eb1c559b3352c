//! Random identifiers shaped like the ClearML server's (uuid4 as 32 lowercase hex chars).

use rand::RngCore;

/// A new uuid4 in hex form, used for task, queue, session and call ids.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_uuid4_hex() {
        let id = super::new_id();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(&id[12..13], "4");
        assert_ne!(id, super::new_id());
    }
}
