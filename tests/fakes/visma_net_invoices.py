"""The fake Visma.net's customer invoices: create (v2), read, list, update and delete drafts,
release, and send to AutoInvoice (``tests/fakes/visma_net.py`` is the fake; this is its mixin)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.visma_net_wire import DRAFTS, USER_NAME, Store, dto, modified, page, unwrap, visma_error


class VismaInvoices:
    """The invoice endpoints; the fake holds the state named here."""

    base_url: str
    vat_codes: set[str]
    writes: Counter[str]
    sent_invoices: set[str]
    release_error: str | None
    stores: dict[str, Store]
    invoices: dict[str, dict[str, Any]]
    _stamp: Callable[[dict[str, Any]], dict[str, Any]]
    _emit: Callable[..., None]
    after_api_write: Callable[[str, str], object] | None

    @property
    def customers(self) -> dict[str, dict[str, Any]]:
        return self.stores["customer"].records

    def add_invoice_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/customerinvoice", self._list_invoices)
        router.add_post("/v2/customerinvoice", self._create_invoice)
        router.add_get("/v1/customerinvoice/{invoiceNumber}", self._get_invoice)
        router.add_put("/v1/customerinvoice/{invoiceNumber}", self._update_invoice)
        router.add_delete("/v1/customerinvoice/{invoiceNumber}", self._delete_invoice)
        router.add_post("/v1/customerinvoice/{invoiceNumber}/action/release", self._release)
        router.add_post("/v1/customerinvoice/{invoiceNumber}/action/sendToAutoInvoice", self._send)

    def _lines(self, invoice: dict[str, Any], lines: list[dict[str, Any]]) -> str | None:
        """Apply line operations; the first problem as Visma would word it, else None."""
        current = invoice.setdefault("invoiceLines", [])
        for line in lines:
            if line.get("operation") == "Delete":
                current[:] = [old for old in current if old["lineNumber"] != line.get("lineNumber")]
                continue
            if line.get("vatCodeId") not in self.vat_codes:
                return f"VAT code '{line.get('vatCodeId')}' was not found."
            if not line.get("accountNumber") and not line.get("inventoryNumber"):
                return "Account is required when no inventory item is given."
            number = max((old["lineNumber"] for old in current), default=0) + 1
            current.append({**line, "lineNumber": number})
        return None

    async def _create_invoice(self, request: web.Request) -> web.Response:
        data = unwrap(await request.json())
        if data.get("customerNumber") not in self.customers:
            return visma_error(400, f"Customer '{data.get('customerNumber')}' was not found.")
        number = f"{len(self.invoices) + 1:06d}"
        invoice = {"referenceNumber": number, "documentType": "Invoice", "status": "Balanced"}
        invoice |= {k: v for k, v in data.items() if k != "invoiceLines"}
        problem = self._lines(invoice, data.get("invoiceLines", []))
        if problem:
            return visma_error(400, problem)
        self.invoices[number] = self._stamp(invoice)
        self.writes["invoice"] += 1
        self._emit("invoice", "Created", number, invoice)
        self._after_write(number)
        return web.Response(status=201, headers={"Location": f"{self.base_url}/v1/customerinvoice/{number}"})

    def _after_write(self, number: str) -> None:
        if self.after_api_write is not None:
            self.after_api_write("invoice", number)

    def user_update_invoice(self, number: str, /, **fields: Any) -> dict[str, Any]:
        """A user edits a draft invoice in Visma.net (flat fields, as stored)."""
        invoice = self._stamp(self.invoices[number] | fields)
        self.invoices[number] = invoice
        self._emit("invoice", "Updated", number, invoice, USER_NAME)
        return invoice

    def _invoice(self, request: web.Request) -> dict[str, Any] | None:
        return self.invoices.get(request.match_info["invoiceNumber"])

    async def _list_invoices(self, request: web.Request) -> web.Response:
        wanted = request.query.get("externalReference")
        found = [
            {k: v for k, v in dto("invoice", inv).items() if k != "invoiceLines"}
            for inv in self.invoices.values()
            if (wanted is None or inv.get("externalReference") == wanted) and modified(inv, request.query)
        ]
        return web.json_response(page(found, request.query))

    async def _get_invoice(self, request: web.Request) -> web.Response:
        invoice = self._invoice(request)
        return (
            web.json_response(dto("invoice", invoice)) if invoice else visma_error(404, "Invoice not found.")
        )

    async def _update_invoice(self, request: web.Request) -> web.Response:
        invoice = self._invoice(request)
        if invoice is None:
            return visma_error(404, "Invoice not found.")
        if invoice["status"] not in DRAFTS:
            return visma_error(400, "The document is released and cannot be changed.")
        data = unwrap(await request.json())
        problem = self._lines(invoice, data.pop("invoiceLines", []))
        if problem:
            return visma_error(400, problem)
        invoice.update(data)
        self._stamp(invoice)
        self.writes["invoice"] += 1
        self._emit("invoice", "Updated", invoice["referenceNumber"], invoice)
        self._after_write(invoice["referenceNumber"])
        return web.Response(status=204)

    async def _delete_invoice(self, request: web.Request) -> web.Response:
        invoice = self._invoice(request)
        if invoice is None:
            return visma_error(404, "Invoice not found.")
        if invoice["status"] not in DRAFTS:
            return visma_error(400, "A released document cannot be deleted.")
        del self.invoices[invoice["referenceNumber"]]
        self.writes["invoice"] += 1
        self._emit("invoice", "Deleted", invoice["referenceNumber"], invoice)
        return web.Response(status=204)

    async def _release(self, request: web.Request) -> web.Response:
        invoice = self._invoice(request)
        if invoice is None:
            return visma_error(404, "Invoice not found.")
        if self.release_error:
            return web.json_response(
                {"actionId": str(uuid.uuid4()), "actionResult": "Failed", "errorInfo": self.release_error}
            )
        if invoice["status"] not in DRAFTS:
            return visma_error(400, "The document is already released.")
        invoice["status"] = "Open"
        self._stamp(invoice)
        self.writes["invoice"] += 1
        self._emit("invoice", "Updated", invoice["referenceNumber"], invoice)
        self._after_write(invoice["referenceNumber"])
        return web.json_response({"actionId": str(uuid.uuid4()), "actionResult": "Done"})

    async def _send(self, request: web.Request) -> web.Response:
        invoice = self._invoice(request)
        if invoice is None or invoice["status"] in DRAFTS:
            return visma_error(400, "Only released invoices can be sent to AutoInvoice.")
        self.sent_invoices.add(invoice["referenceNumber"])
        body = {"refNbr": invoice["referenceNumber"], "documentType": "Invoice", "actionResult": "Done"}
        return web.json_response(body)
