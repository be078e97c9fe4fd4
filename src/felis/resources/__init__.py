"""calicoctl's semantics for resources, between the CLI and the datastore: parse, default,
validate, check against what is stored (inside the write's transaction), write.

`felis.cli.resources`, `felis plan` and `felis lint` use it; it imports `felis.model` and
`felis.datastore`, never the CLI.
"""

from felis.resources.checks import (
    DeleteTarget,
    MappingView,
    Problems,
    StoreReader,
    WriteVerb,
    delete_problems,
    item_key,
    write_problems_against,
)
from felis.resources.service import (
    Created,
    Deleted,
    ManifestSource,
    ResourceService,
    check_write,
    objects_of,
    parse,
    preview_apply,
    stored_view,
)

__all__ = [
    "Created",
    "DeleteTarget",
    "Deleted",
    "ManifestSource",
    "MappingView",
    "Problems",
    "ResourceService",
    "StoreReader",
    "WriteVerb",
    "check_write",
    "delete_problems",
    "item_key",
    "objects_of",
    "parse",
    "preview_apply",
    "stored_view",
    "write_problems_against",
]
