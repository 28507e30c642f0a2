"""The example runs against the real router."""

import asyncio
import sys

from support import API_KEY, CLIENT_DIR, SECRET, RouterTestCase


class ExampleTest(RouterTestCase):
    async def test_demo_example(self):
        router = self.start_router("--agents.demo-step-delay-ms=10")
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(CLIENT_DIR / "examples" / "demo.py"), "--url", router.ws_url,
            "--secret", SECRET, "--user", "alice", "--api-key", API_KEY,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), 20)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        text = out.decode()
        self.assertEqual(process.returncode, 0, text + err.decode())
        self.assertIn("connected as 'alice'", text)
        self.assertIn("final: agent_completed", text)
        self.assertIn("publish answered {'delivered': 1}", text)
        self.assertIn("demo.notice", text)
        self.assertIn("[state] closed (code 1000, closed by the application, terminal)", text)
