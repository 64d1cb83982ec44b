"""What Exact Online accepts and requires when the gateway POSTs a document, as the tests rely on it.

Test data, in the project's own form: per entity, the key Exact generates, the property names a POST may carry, and
the ones a POST must carry. The tests hold the gateway's documents (tests/test_booking.py), the respx stand-in for
Exact (tests/support/fake_exact.py) and the sandbox Exact's own table (gateway/sandbox/exact_entities.py, checked in
tests/test_sandbox_exact.py) to it, so none of them is checked against itself.

Where it comes from: Exact Online's REST API reference, entity by entity (developers keep a copy of it, as
exact-entities.json, in the shared reference folder beside the repository; nothing in the repository reads it). The
names are Exact's; the selection, the form and the rules below are ours (derived for issue 11, read off it so):
- `accepted`: every property whose methods include POST, the key among them (Exact takes a client-chosen id).
- `required`: every property the reference marks required, except the key (Exact generates it when it is left out).
- A line POSTed inside its document (SalesEntryLines within a SalesEntry, ...) names no parent: it inherits the
  document's key, so `parent_key` is not required of a nested line.
Only what the gateway writes is here; refresh it from the reference when the gateway writes a new entity or property.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EntityContract:
    name: str
    key: str
    accepted: frozenset[str]
    required: frozenset[str]
    lines: str | None = None  # the collection of nested lines a POST of the document carries
    parent_key: str | None = None  # for a line entity: its document's key, inherited when nested

    def required_when(self, *, nested: bool) -> frozenset[str]:
        """What a POST must carry: a nested line leaves out its parent's key."""
        return self.required - {self.parent_key} if nested and self.parent_key else self.required

    def refusal(self, payload: dict[str, object], *, nested: bool = False) -> str | None:
        """Why Exact would refuse this POST body (unknown or missing properties), or None."""
        unknown = sorted(set(payload) - self.accepted)
        missing = sorted(self.required_when(nested=nested) - set(payload))
        if unknown or missing:
            return f"{self.name}: refused {unknown} missing {missing}"
        return None


def _contract(
    name: str, key: str, accepted: str, required: str, *, lines: str | None = None, parent_key: str | None = None
) -> EntityContract:
    return EntityContract(name, key, frozenset(accepted.split()), frozenset(required.split()), lines, parent_key)


CONTRACTS = {
    c.name: c
    for c in (
        _contract(
            "SalesEntries",
            "EntryID",
            (
                "BatchNumber Currency Customer Description Document DueDate EntryDate EntryID EntryNumber "
                "ExternalLinkReference GAccountAmountFC InvoiceNumber IsExtraDuty Journal OrderNumber "
                "PaymentCondition PaymentReference ProcessNumber Rate ReportingPeriod ReportingYear Reversal "
                "SalesEntryLines VATAmountFC WithholdingTaxAmountDC WithholdingTaxBaseAmount WithholdingTaxPercentage "
                "YourRef"
            ),
            "Customer Journal SalesEntryLines",
            lines="SalesEntryLines",
        ),
        _contract(
            "SalesEntryLines",
            "ID",
            (
                "AmountFC Asset CostCenter CostUnit Description EntryID ExtraDutyAmountFC ExtraDutyPercentage From "
                "GLAccount ID IntraStatArea IntraStatCountry IntraStatDeliveryTerm IntraStatTransactionA "
                "IntraStatTransactionB IntraStatTransportMethod Notes Project ProjectWBS Quantity SerialNumber "
                "StatisticalNetWeight StatisticalNumber StatisticalQuantity StatisticalValue Subscription TaxSchedule "
                "To TrackingNumber VATAmountFC VATBaseAmountDC VATBaseAmountFC VATCode VATPercentage"
            ),
            "AmountFC EntryID GLAccount",
            parent_key="EntryID",
        ),
        _contract(
            "SalesInvoices",
            "InvoiceID",
            (
                "AmountDiscount AmountDiscountExclVat Currency DeliverTo DeliverToAddress DeliverToContactPerson "
                "Description Discount Document DueDate ExtraDutyAmountFC GAccountAmountFC IncotermAddress "
                "IncotermCode IncotermVersion InvoiceID InvoiceTo InvoiceToContactPerson IsExtraDuty Journal "
                "OrderDate OrderNumber OrderedBy OrderedByContactPerson PaymentCondition PaymentReference Remarks "
                "SalesChannel SalesInvoiceLines SalesInvoiceOrderChargeLines Salesperson SelectionCode ShippingMethod "
                "TaxSchedule Type Warehouse WithholdingTaxAmountFC WithholdingTaxBaseAmount WithholdingTaxPercentage "
                "YourRef"
            ),
            "Journal OrderedBy SalesInvoiceLines",
            lines="SalesInvoiceLines",
        ),
        _contract(
            "SalesInvoiceLines",
            "ID",
            (
                "AmountFC CostCenter CostUnit DeliveryDate Description Discount Employee EndTime ExtraDutyAmountFC "
                "ExtraDutyPercentage GLAccount ID InvoiceID Item NetPrice Notes Pricelist Project ProjectWBS Quantity "
                "StartTime TaxSchedule UnitCode UnitPrice VATAmountDC VATAmountFC VATCode VATPercentage"
            ),
            "GLAccount InvoiceID Item",
            parent_key="InvoiceID",
        ),
        _contract(
            "SalesOrders",
            "OrderID",
            (
                "AmountDiscount AmountDiscountExclVat ApprovalStatus Currency DeliverTo DeliverToContactPerson "
                "DeliveryAddress DeliveryDate Description Discount Document IncotermAddress IncotermCode "
                "IncotermVersion InvoiceTo InvoiceToContactPerson OrderDate OrderID OrderNumber OrderedBy "
                "OrderedByContactPerson PaymentCondition PaymentReference Remarks SalesChannel SalesOrderLines "
                "SalesOrderOrderChargeLines Salesperson SelectionCode ShippingMethod TaxSchedule WarehouseID YourRef"
            ),
            "OrderedBy SalesOrderLines",
            lines="SalesOrderLines",
        ),
        _contract(
            "SalesOrderLines",
            "ID",
            (
                "AmountFC CostCenter CostUnit DeliveryDate Description Discount ID Item ItemVersion Margin NetPrice "
                "Notes OrderID OrderNumber Pricelist Project Quantity ShopOrder TaxSchedule UnitCode UnitPrice "
                "UseDropShipment VATAmount VATCode VATPercentage"
            ),
            "Item OrderID",
            parent_key="OrderID",
        ),
        _contract(
            "PrintedSalesInvoices",
            "InvoiceID",
            (
                "Division Document DocumentCreationError DocumentCreationSuccess DocumentLayout EmailCreationError "
                "EmailCreationSuccess EmailLayout ExtraText InvoiceDate InvoiceID PeppolCreationError "
                "PeppolCreationSuccess PostboxMessageCreationError PostboxMessageCreationSuccess PostboxSender "
                "ReportingPeriod ReportingYear SendEmailToCustomer SendInvoiceToCustomerPostbox SendInvoiceViaPeppol "
                "SendOutputBasedOnAccount SenderEmailAddress"
            ),
            "",
        ),
        _contract(
            "Accounts",
            "ID",
            (
                "AccountManager Accountant ActivitySector ActivitySubSector AddressLine1 AddressLine2 AddressLine3 "
                "AutomaticProcessProposedEntry BSN Blocked BusinessType CanDropShip ChamberOfCommerce City "
                "Classification1 Classification2 Classification3 Classification4 Classification5 Classification6 "
                "Classification7 Classification8 Code CodeAtSupplier CompanySize ConsolidationScenario ControlledDate "
                "Country CreditLinePurchase CreditLineSales DatevCreditorCode DatevDebtorCode DeliveryAdvice "
                "DiscountPurchase DiscountSales EORINumber Email EnableSalesPaymentLink EndDate EstablishedDate Fax "
                "GLAP GLAR GLAccountPurchase GLAccountSales GlnNumber HasWithholdingTaxSales ID "
                "IgnoreDatevWarningMessage IncotermAddressPurchase IncotermAddressSales IncotermCodePurchase "
                "IncotermCodeSales IncotermVersionPurchase IncotermVersionSales IntraStatArea IntraStatDeliveryTerm "
                "IntraStatSystem IntraStatTransactionA IntraStatTransactionB IntraStatTransportMethod InvoiceAccount "
                "InvoiceAttachmentType InvoicingMethod IsAccountant IsAgency IsCompetitor IsExtraDuty IsMailing "
                "IsPilot IsReseller IsSupplier Language Latitude LeadPurpose LeadSource Logo LogoFileName Longitude "
                "MainContact Name OINNumber Parent PayAsYouEarn PaymentConditionPurchase PaymentConditionSales "
                "PeppolIdentifier PeppolIdentifierType Phone PhoneExtension Postcode PriceList PurchaseCurrency "
                "PurchaseLeadDays PurchaseVATCode RSIN RecepientOfCommissions Remarks Reseller SalesCurrency "
                "SalesTaxSchedule SalesVATCode SearchCode SecurityLevel SeparateInvPerProject "
                "SeparateInvPerSubscription ShippingLeadDays ShippingMethod ShowRemarkForSales StartDate State Status "
                "TradeName UniqueTaxpayerReference VATLiability VATNumber Website"
            ),
            "Name",
        ),
        _contract(
            "Items",
            "ID",
            (
                "AverageCost Barcode Class_01 Class_02 Class_03 Class_04 Class_05 Class_06 Class_07 Class_08 Class_09 "
                "Class_10 Code CopyRemarks CostPriceCurrency CostPriceNew CostPriceStandard Description EndDate "
                "ExtraDescription FreeBoolField_01 FreeBoolField_02 FreeBoolField_03 FreeBoolField_04 "
                "FreeBoolField_05 FreeDateField_01 FreeDateField_02 FreeDateField_03 FreeDateField_04 "
                "FreeDateField_05 FreeNumberField_01 FreeNumberField_02 FreeNumberField_03 FreeNumberField_04 "
                "FreeNumberField_05 FreeNumberField_06 FreeNumberField_07 FreeNumberField_08 FreeTextField_01 "
                "FreeTextField_02 FreeTextField_03 FreeTextField_04 FreeTextField_05 FreeTextField_06 "
                "FreeTextField_07 FreeTextField_08 FreeTextField_09 FreeTextField_10 GLCosts GLCostsWorkInProgress "
                "GLRevenue GLRevenueWorkInProgress GLStock GrossWeight ID IsBatchItem IsBatchNumberItem "
                "IsFractionAllowedItem IsMakeItem IsNewContract IsOnDemandItem IsPackageItem IsPurchaseItem "
                "IsRegistrationCodeItem IsSalesItem IsSerialItem IsSerialNumberItem IsStockItem IsSubcontractedItem "
                "IsTaxableItem IsTime IsWebshopItem ItemGroup NetWeight NetWeightUnit Notes Picture PictureName "
                "SalesVatCode SearchCode SecurityLevel StartDate Unit"
            ),
            "Code Description",
        ),
    )
}
