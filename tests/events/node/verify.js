// Reads {payload, header, secret} JSON on stdin; prints the verified event's id, or exits 1.
const Stripe = require("stripe");
const stripe = new Stripe("sk_test_unused");
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const { payload, header, secret } = JSON.parse(input);
  try {
    const event = stripe.webhooks.constructEvent(payload, header, secret);
    process.stdout.write(event.id);
  } catch (err) {
    process.stderr.write(String(err.message));
    process.exit(1);
  }
});
