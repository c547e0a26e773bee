"""The login QR, whatever the protocol: drawing it, and counting the refreshes nobody scanned."""
from __future__ import annotations

import io

from .errors import QrRefreshLimit

# itchat draws web WeChat's QR at 10 pixels a module with a 4-module quiet zone: the page and the
# CLI get iLink's QR at the same scale.
SCALE = 10
BORDER = 4


def draw(text: str) -> bytes:
    """A PNG of the QR that encodes `text` exactly, as a phone's camera reads it."""
    import segno

    code = segno.make(text, error="m", boost_error=False)
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=SCALE, border=BORDER)
    return buffer.getvalue()


class RefreshCap:
    """Counts the QRs of one login attempt and ends it once too many expired with nobody scanning.

    DESIGN.md: needs_login once the QR "expired BOT_QR_MAX_REFRESH times with nobody scanning"
    (at least once: 0 would otherwise never show a QR at all). A QR someone scanned and that
    then died (cancelled on the phone, too many wrong codes) was attended and does not count.
    """

    def __init__(self, max_refresh: int):
        self.max_refresh = max_refresh
        self.qr_count = 0
        self.unattended = 0
        self.attended = False   # the current QR was scanned at some point

    def new_qr(self) -> int:
        """Account for a new QR; return its refresh number (0: the first), or raise QrRefreshLimit."""
        if self.qr_count and not self.attended:
            self.unattended += 1
            if self.unattended >= max(1, self.max_refresh):
                times = "once" if self.unattended == 1 else f"{self.unattended} times"
                raise QrRefreshLimit(f"the login QR expired {times} with nobody scanning it")
        refresh = self.qr_count
        self.qr_count += 1
        self.attended = False
        return refresh

    def scanned(self) -> None:
        self.attended = True
