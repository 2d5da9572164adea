use serde::{Deserialize, Serialize};

use crate::{FormatSet, ImageFormat, ImageInfo};

/// Which images the gateway forwards, judged from the header alone.
///
/// Bounds are inclusive and apply to each side separately.
///
/// This is the `[images]` configuration section as it is deserialized
/// (`formats`, `min_width`, `min_height`, `max_width`, `max_height`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagePolicy {
    pub formats: FormatSet,
    pub min_width: u32,
    pub min_height: u32,
    pub max_width: u32,
    pub max_height: u32,
}

impl Default for ImagePolicy {
    /// What the vendor accepts: JPEG, PNG and WebP, 192 to 8192 px on each side.
    fn default() -> Self {
        Self {
            formats: FormatSet::from([ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Webp]),
            min_width: 192,
            min_height: 192,
            max_width: 8192,
            max_height: 8192,
        }
    }
}

/// A tenant's changes to the deployment's [`ImagePolicy`]; unset fields
/// inherit. Resolved per request, so a tenant follows later changes of the
/// deployment default for every field it does not set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formats: Option<FormatSet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_height: Option<u32>,
}

impl ImagePolicy {
    /// Every supported format at any size: for benchmarks and tools that
    /// feed images the vendor's bounds would refuse.
    pub const ANY: ImagePolicy = ImagePolicy {
        formats: FormatSet::ALL,
        min_width: 1,
        min_height: 1,
        max_width: u32::MAX,
        max_height: u32::MAX,
    };

    /// This policy with a tenant's overrides applied.
    #[must_use]
    pub fn with(&self, o: &ImageOverrides) -> ImagePolicy {
        ImagePolicy {
            formats: o.formats.unwrap_or(self.formats),
            min_width: o.min_width.unwrap_or(self.min_width),
            min_height: o.min_height.unwrap_or(self.min_height),
            max_width: o.max_width.unwrap_or(self.max_width),
            max_height: o.max_height.unwrap_or(self.max_height),
        }
    }

    /// What makes this policy unusable (it would refuse every image), as
    /// messages to prefix with where the policy came from.
    pub fn problems(&self) -> Vec<&'static str> {
        let mut p = Vec::new();
        if self.formats.is_empty() {
            p.push("formats must name at least one format");
        }
        if self.min_width == 0 || self.min_height == 0 {
            p.push("min_width and min_height must be at least 1");
        }
        if self.min_width > self.max_width || self.min_height > self.max_height {
            p.push("minimum dimensions exceed the maximum");
        }
        p
    }
}

/// An image the policy refuses.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("image format {0} is not allowed")]
    FormatNotAllowed(ImageFormat),
    #[error("image is {width}x{height} px, below the minimum size")]
    TooSmall { width: u32, height: u32 },
    #[error("image is {width}x{height} px, above the maximum size")]
    TooLarge { width: u32, height: u32 },
}

impl ImagePolicy {
    /// Checks the format first, then the minimum, then the maximum size, so an image that
    /// is both too thin and too long (say 100×9000) is reported as too small.
    pub fn check(&self, info: &ImageInfo) -> Result<(), PolicyError> {
        let &ImageInfo {
            format,
            width,
            height,
        } = info;
        if !self.formats.contains(format) {
            return Err(PolicyError::FormatNotAllowed(format));
        }
        if width < self.min_width || height < self.min_height {
            return Err(PolicyError::TooSmall { width, height });
        }
        if width > self.max_width || height > self.max_height {
            return Err(PolicyError::TooLarge { width, height });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(format: ImageFormat, width: u32, height: u32) -> ImageInfo {
        ImageInfo {
            format,
            width,
            height,
        }
    }

    fn jpeg(width: u32, height: u32) -> ImageInfo {
        info(ImageFormat::Jpeg, width, height)
    }

    #[test]
    fn default_matches_spec() {
        let policy = ImagePolicy::default();
        assert_eq!(
            policy.formats,
            FormatSet::from([ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Webp])
        );
        assert_eq!((policy.min_width, policy.min_height), (192, 192));
        assert_eq!((policy.max_width, policy.max_height), (8192, 8192));
    }

    #[test]
    fn minimum_is_inclusive_on_each_side() {
        let policy = ImagePolicy::default();
        assert_eq!(policy.check(&jpeg(192, 192)), Ok(()));
        for (w, h) in [(191, 192), (192, 191), (191, 191), (1, 8192)] {
            assert_eq!(
                policy.check(&jpeg(w, h)),
                Err(PolicyError::TooSmall {
                    width: w,
                    height: h
                })
            );
        }
    }

    #[test]
    fn maximum_is_inclusive_on_each_side() {
        let policy = ImagePolicy::default();
        assert_eq!(policy.check(&jpeg(8192, 8192)), Ok(()));
        for (w, h) in [(8193, 8192), (8192, 8193), (8193, 8193), (9000, 200)] {
            assert_eq!(
                policy.check(&jpeg(w, h)),
                Err(PolicyError::TooLarge {
                    width: w,
                    height: h
                })
            );
        }
    }

    #[test]
    fn too_small_wins_over_too_large() {
        assert_eq!(
            ImagePolicy::default().check(&jpeg(100, 9000)),
            Err(PolicyError::TooSmall {
                width: 100,
                height: 9000
            })
        );
    }

    #[test]
    fn format_allow_list() {
        let policy = ImagePolicy::default();
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Webp] {
            assert_eq!(policy.check(&info(format, 640, 480)), Ok(()));
        }
        assert_eq!(
            policy.check(&info(ImageFormat::Gif, 640, 480)),
            Err(PolicyError::FormatNotAllowed(ImageFormat::Gif))
        );

        let jpeg_only = ImagePolicy {
            formats: FormatSet::from([ImageFormat::Jpeg]),
            ..ImagePolicy::default()
        };
        assert_eq!(
            jpeg_only.check(&info(ImageFormat::Png, 640, 480)),
            Err(PolicyError::FormatNotAllowed(ImageFormat::Png))
        );
        // The format is refused before the size is even looked at.
        assert_eq!(
            jpeg_only.check(&info(ImageFormat::Webp, 1, 1)),
            Err(PolicyError::FormatNotAllowed(ImageFormat::Webp))
        );

        let none = ImagePolicy {
            formats: FormatSet::EMPTY,
            ..ImagePolicy::default()
        };
        for format in ImageFormat::ALL {
            assert_eq!(
                none.check(&info(format, 640, 480)),
                Err(PolicyError::FormatNotAllowed(format))
            );
        }
    }

    #[test]
    fn overrides_apply_field_by_field() {
        let base = ImagePolicy::default();
        let o: ImageOverrides =
            serde_json::from_str(r#"{"min_width":640,"formats":["gif"]}"#).unwrap();
        let p = base.with(&o);
        assert_eq!((p.min_width, p.min_height), (640, 192));
        assert_eq!(p.formats, FormatSet::from([ImageFormat::Gif]));
        assert_eq!(base.with(&ImageOverrides::default()), base);
        assert!(serde_json::from_str::<ImageOverrides>(r#"{"min_widht":1}"#).is_err());
        assert!(base.problems().is_empty());
        let bad = ImagePolicy {
            min_width: 0,
            max_height: 10,
            formats: FormatSet::EMPTY,
            ..base
        };
        assert_eq!(bad.problems().len(), 3);
    }

    #[test]
    fn custom_bounds() {
        let vendor_recommended = ImagePolicy {
            min_width: 640,
            min_height: 480,
            ..ImagePolicy::default()
        };
        assert_eq!(vendor_recommended.check(&jpeg(640, 480)), Ok(()));
        assert!(vendor_recommended.check(&jpeg(639, 480)).is_err());
        assert!(vendor_recommended.check(&jpeg(640, 479)).is_err());
    }
}
