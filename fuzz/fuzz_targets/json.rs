//! Any bytes as a JSON request body: the reader never panics, and whatever
//! it accepts is a JSON object whose one `faceImage` is the string it
//! returned (checked against serde_json's own tree).
#![no_main]

use libfuzzer_sys::fuzz_target;
use livegate_payload::body::json;

fuzz_target!(|data: &[u8]| {
    let Ok(face) = json::parse(data) else {
        return;
    };
    assert!(!face.image.is_empty());
    let tree: serde_json::Value = serde_json::from_slice(data).expect("accepted, so valid JSON");
    let object = tree.as_object().expect("accepted, so an object");
    assert_eq!(object["faceImage"].as_str(), Some(&*face.image));
    if face.forwardable {
        assert_eq!(object.len(), 1, "forwardable means faceImage alone");
    }
});
