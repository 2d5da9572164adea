use std::fmt;
use std::str::FromStr;

/// An image container the gateway can recognise by its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
}

impl ImageFormat {
    /// Every recognised format, for config validation and docs.
    pub const ALL: [ImageFormat; 4] = [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Webp,
        ImageFormat::Gif,
    ];

    /// Lowercase name, stable: used in config files, metrics labels and audit records.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
            ImageFormat::Gif => "gif",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string is not one of the names [`ImageFormat::from_str`] accepts.
///
/// Carries no copy of the rejected text, so it is safe to print anywhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown image format (expected jpeg, jpg, png, webp or gif)")]
pub struct ParseImageFormatError;

impl FromStr for ImageFormat {
    type Err = ParseImageFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const NAMES: [(&str, ImageFormat); 5] = [
            ("jpeg", ImageFormat::Jpeg),
            ("jpg", ImageFormat::Jpeg),
            ("png", ImageFormat::Png),
            ("webp", ImageFormat::Webp),
            ("gif", ImageFormat::Gif),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, format)| format)
            .ok_or(ParseImageFormatError)
    }
}

impl ImageFormat {
    fn bit(self) -> u8 {
        match self {
            ImageFormat::Jpeg => 1,
            ImageFormat::Png => 2,
            ImageFormat::Webp => 4,
            ImageFormat::Gif => 8,
        }
    }
}

/// A set of image formats; `Copy`, so a policy is resolved per request
/// without allocating. Written as a list of names (`["jpeg", "png"]`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FormatSet(u8);

impl FormatSet {
    pub const EMPTY: FormatSet = FormatSet(0);
    /// Every format in [`ImageFormat::ALL`].
    pub const ALL: FormatSet = FormatSet(1 | 2 | 4 | 8);

    pub fn contains(self, format: ImageFormat) -> bool {
        self.0 & format.bit() != 0
    }

    pub fn insert(&mut self, format: ImageFormat) {
        self.0 |= format.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The formats in [`ImageFormat::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = ImageFormat> {
        ImageFormat::ALL
            .into_iter()
            .filter(move |f| self.contains(*f))
    }
}

impl FromIterator<ImageFormat> for FormatSet {
    fn from_iter<I: IntoIterator<Item = ImageFormat>>(iter: I) -> Self {
        let mut set = FormatSet::EMPTY;
        for f in iter {
            set.insert(f);
        }
        set
    }
}

impl<const N: usize> From<[ImageFormat; N]> for FormatSet {
    fn from(formats: [ImageFormat; N]) -> Self {
        formats.into_iter().collect()
    }
}

impl fmt::Debug for FormatSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl serde::Serialize for FormatSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(ImageFormat::as_str))
    }
}

impl<'de> serde::Deserialize<'de> for FormatSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|n| n.parse::<ImageFormat>())
            .collect::<Result<FormatSet, _>>()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for format in ImageFormat::ALL {
            assert_eq!(format.as_str().parse::<ImageFormat>(), Ok(format));
            assert_eq!(format.to_string(), format.as_str());
        }
        let msg = ParseImageFormatError.to_string();
        assert_eq!(msg, msg.to_lowercase());
    }

    #[test]
    fn parse_is_case_insensitive_and_knows_jpg() {
        assert_eq!("JPG".parse::<ImageFormat>(), Ok(ImageFormat::Jpeg));
        assert_eq!("Jpeg".parse::<ImageFormat>(), Ok(ImageFormat::Jpeg));
        assert_eq!("WebP".parse::<ImageFormat>(), Ok(ImageFormat::Webp));
        assert_eq!("PNG".parse::<ImageFormat>(), Ok(ImageFormat::Png));
        assert_eq!("gif".parse::<ImageFormat>(), Ok(ImageFormat::Gif));
    }

    #[test]
    fn format_sets() {
        let set = FormatSet::from([ImageFormat::Png, ImageFormat::Jpeg]);
        assert!(set.contains(ImageFormat::Jpeg) && !set.contains(ImageFormat::Gif));
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["jpeg","png"]"#);
        let back: FormatSet = serde_json::from_str(r#"["PNG","jpg"]"#).unwrap();
        assert_eq!(back, set);
        assert!(serde_json::from_str::<FormatSet>(r#"["tiff"]"#).is_err());
        assert!(FormatSet::EMPTY.is_empty());
        assert_eq!(FormatSet::ALL, FormatSet::from(ImageFormat::ALL));
    }

    #[test]
    fn parse_rejects_other_names() {
        for bad in ["", "tiff", " jpeg", "jpeg ", "image/jpeg", "jp"] {
            assert_eq!(bad.parse::<ImageFormat>(), Err(ParseImageFormatError));
        }
    }
}
