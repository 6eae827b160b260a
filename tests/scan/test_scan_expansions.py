"""`scan` decides expansions with the engine's one model (issue 10): the documented secret-store
idiom of UI extensions, `stripe.apps.secrets.find({..., expand: ['payload']})` (Stripe Apps
"Store secrets" guide), is no invalid expansion and its call counts."""

from __future__ import annotations

from pathlib import Path

from permgate.scan import scan

VIEW = """import Stripe from "stripe";
import { createHttpClient, STRIPE_API_KEY } from "@stripe/ui-extension-sdk/http_client";

const stripe = new Stripe(STRIPE_API_KEY, { httpClient: createHttpClient() });

export async function token(userId: string) {
  const secret = await stripe.apps.secrets.find({
    scope: { type: "user", user: userId },
    name: "oauth_token",
    expand: ["payload"],
  });
  return secret.payload;
}
"""


def test_secrets_find_with_payload_is_a_valid_counted_call(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Settings.tsx").write_text(VIEW)
    v = scan(tmp_path, [], "stripe-app.json")
    assert v.invalid == []
    [call] = v.calls
    assert call.call.expand == ("payload",)
    assert call.kind in ("missing", "allowed") and call.counts
    assert [m.permission for m in v.missing] == ["secret_read"]
    assert scan(tmp_path, ["secret_write"], "stripe-app.json").missing == []
