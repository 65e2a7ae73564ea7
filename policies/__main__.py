"""Entry point of the CrossGuard pack: `pulumi preview --policy-pack policies`.

The only place a PolicyPack is constructed (its constructor starts a gRPC server and never
returns). The Pulumi CLI runs this file with policies/ as the working directory, so the repository
root goes on sys.path for the `policies` package to import.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.pack import PACK_DESCRIPTION, PACK_NAME, build_policies

PolicyPack(
    name=PACK_NAME,
    description=PACK_DESCRIPTION,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=build_policies(),
)
