"""The known datasets: their files, published checksums and download addresses.

Checksum provenance
-------------------
- Downloads (``Download.sha256``, ``Download.size``): tensorflow_datasets
  ``tensorflow_datasets/url_checksums/{mnist,fashion_mnist}.txt``; for
  ``cifar-10-python.tar.gz`` torchvision's ``prototype/datasets/_builtin/cifar.py``
  (size 170,498,071 bytes, the file behind the MD5 c58f30108f718f92721af3b95e74349a
  published at https://www.cs.toronto.edu/~kriz/cifar.html).
- Members (the bytes actually decoded): for MNIST-family IDX files the SHA-256 of the
  *decompressed* file, as widely published next to the gzip checksums above; this is what
  lets a re-compressed copy (Debian's ``dataset-fashion-mnist`` re-gzips the files, so its
  ``.gz`` differ from the published ones byte-for-byte) or a gunzipped copy verify. The
  Fashion-MNIST values were checked against the Debian files. CIFAR-10 batches: the MD5
  values published with torchvision's ``datasets/cifar.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Download:
    """One official file: where it lives, its size in bytes and its SHA-256."""

    filename: str
    url: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Spec:
    """What a dataset looks like on disk and once decoded.

    ``fmt`` is ``"idx"`` (MNIST family: each member a file ``<member>`` or
    ``<member>.gz``) or ``"cifar"`` (python pickle batches in ``subfolder``, or the
    ``archive`` holding ``subfolder/<member>``). ``digests`` maps each member to
    ``"<algorithm>:<hex>"`` of its decoded bytes.
    """

    name: str
    fmt: str
    image_shape: tuple[int, int, int]
    num_classes: int
    train: tuple[str, ...]
    test: tuple[str, ...]
    digests: dict[str, str]
    downloads: tuple[Download, ...]
    subfolder: str = ""
    archive: str = ""

    @property
    def members(self) -> tuple[str, ...]:
        return self.train + self.test


_IDX_TRAIN = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
_IDX_TEST = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_spec(name: str, base_url: str, member_sha256: tuple[str, ...],
              gz: tuple[tuple[int, str], ...]) -> Spec:
    members = _IDX_TRAIN + _IDX_TEST
    return Spec(
        name=name,
        fmt="idx",
        image_shape=(28, 28, 1),
        num_classes=10,
        train=_IDX_TRAIN,
        test=_IDX_TEST,
        digests={m: f"sha256:{h}" for m, h in zip(members, member_sha256)},
        downloads=tuple(Download(f"{m}.gz", f"{base_url}{m}.gz", size, sha)
                        for m, (size, sha) in zip(members, gz)),
    )


MNIST = _idx_spec(
    "mnist",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    (
        (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ),
)

FASHION_MNIST = _idx_spec(
    "fashion-mnist",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
    (
        (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ),
)

CIFAR10 = Spec(
    name="cifar10",
    fmt="cifar",
    image_shape=(32, 32, 3),
    num_classes=10,
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test=("test_batch",),
    digests={
        "data_batch_1": "md5:c99cafc152244af753f735de768cd75f",
        "data_batch_2": "md5:d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "md5:54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "md5:634d18415352ddfa80567beed471001a",
        "data_batch_5": "md5:482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "md5:40351d587109b95175f43aff81a1287e",
    },
    downloads=(Download(
        "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        170498071,
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    ),),
    subfolder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
)

SPECS: dict[str, Spec] = {s.name: s for s in (MNIST, FASHION_MNIST, CIFAR10)}

# Debian package that installs real Fashion-MNIST under /usr/share/datasets/fashion-mnist/.
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DATASET = "fashion-mnist"


def get_spec(name: str) -> Spec:
    """The spec of a dataset by name; ValueError listing the known names otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(SPECS)}") from None
