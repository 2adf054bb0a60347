"""The node's monitor (docs/monitoring.md): what each instance showed (:mod:`.observation`), the statistics that
compare a stream of them with the engine's reference and with the site's own first instances (:mod:`.checks`,
:mod:`.watch`), and the alerts they raise (:mod:`.alerts`), kept in the spool's ledger (:mod:`.store`)."""
