"""The words redaction listens for, per language (English, Spanish, French, German).

Telephone speech says numbers as words; text2num turns them into digits (:mod:`.spoken`).  What
it does not cover is here: "double five", "oh" for zero, the hesitations that do not end a
number, and the phrases that announce an entity ("security code", "fecha de nacimiento", ...).
Every phrase is lower case, without accents only where speech-to-text drops them too.
"""

from __future__ import annotations

from typing import Final

LANGUAGES: Final = ("en", "es", "fr", "de")

#: "double five" is "five five" (a multiplier before a number word).
MULTIPLIERS: Final[dict[str, dict[str, int]]] = {
    "en": {"double": 2, "triple": 3},
    "es": {"doble": 2, "triple": 3},
    "fr": {"double": 2, "triple": 3},
    "de": {"doppel": 2, "doppelte": 2, "dreifach": 3},
}

#: Spoken zero that text2num leaves alone ("oh five" -> "o five", which it reads as 05).
ZERO: Final[dict[str, dict[str, str]]] = {"en": {"oh": "o"}}

#: Sounds between the digits of one number that do not end it.
FILLERS: Final = frozenset(
    {"uh", "um", "umm", "er", "erm", "eh", "ah", "hmm", "äh", "ähm", "öh", "euh", "bah", "este",
     "eee", "mmm"}
)  # fmt: skip

#: The "at" and "dot" of a spoken e-mail address.
EMAIL_AT: Final = frozenset({"at", "arroba", "arobase", "ät", "@"})
EMAIL_DOT: Final = frozenset({"dot", "punto", "point", "punkt", "."})

#: What announces a card's security code or its expiry date.
CVV_CUES: Final = (
    "security code", "cvv", "cvc", "cvv2", "card verification", "three digits on the back",
    "código de seguridad", "codigo de seguridad", "cryptogramme", "code de sécurité",
    "code de securite", "prüfnummer", "kartenprüfnummer", "sicherheitscode",
)  # fmt: skip
EXPIRY_CUES: Final = (
    "expiry", "expiration", "expires", "exp date", "valid thru", "valid through",
    "caducidad", "vencimiento", "vence", "caduca", "date d'expiration", "expire", "expiration",
    "ablaufdatum", "gültig bis", "läuft ab",
)  # fmt: skip

#: What announces a date of birth.
BIRTH_CUES: Final = (
    "date of birth", "birth date", "birthday", "born on", "i was born", "dob",
    "fecha de nacimiento", "nací el", "naci el", "nacido el", "nacida el",
    "date de naissance", "né le", "née le", "je suis né", "je suis née",
    "geburtsdatum", "geboren am", "geburtstag",
)  # fmt: skip

#: What announces a bank account number.
ACCOUNT_CUES: Final = (
    "account number", "routing number", "sort code", "número de cuenta", "numero de cuenta",
    "numéro de compte", "numero de compte", "kontonummer", "bankleitzahl",
)  # fmt: skip

#: What announces a national id without a check digit (a US social security number).
NATIONAL_ID_CUES: Final = ("social security", "ssn", "social insurance")

MONTHS: Final = frozenset(
    {"january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december",
     "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre",
     "setiembre", "octubre", "noviembre", "diciembre",
     "janvier", "février", "fevrier", "mars", "avril", "mai", "juin", "juillet", "août", "aout",
     "septembre", "octobre", "novembre", "décembre", "decembre",
     "januar", "februar", "märz", "maerz", "juni", "juli", "oktober", "dezember"}
)  # fmt: skip

#: Small words inside a spoken date ("is the third of March", "es el tres de marzo").
DATE_GLUE: Final = frozenset(
    {"the", "of", "el", "de", "del", "le", "der", "den", "am", "in", "is", "was", "es", "era",
     "est", "était", "ist", "war", "on"}
)  # fmt: skip

#: Words that say an e-mail address is being given (the "at" of one is held until it ends).
EMAIL_CUES: Final = frozenset(
    {"email", "e-mail", "mail", "address", "correo", "dirección", "direccion", "courriel",
     "adresse", "mel"}
)  # fmt: skip

#: What announces a number that is none of the above: an order, a ticket, an invoice.
SAFE_CUES: Final = (
    "order number", "reference", "ticket", "invoice", "case number", "confirmation number",
    "tracking number", "número de pedido", "numero de pedido", "referencia", "factura",
    "numéro de commande", "numero de commande", "référence", "facture", "bestellnummer",
    "auftragsnummer", "rechnungsnummer", "referenz",
)  # fmt: skip

#: Where a phone number is dialled, per language (phonenumbers regions).
PHONE_REGIONS: Final[dict[str, tuple[str, ...]]] = {
    "en": ("US", "GB", "CA", "AU", "IE"),
    "es": ("ES", "MX", "AR", "CO", "US"),
    "fr": ("FR", "BE", "CH", "CA"),
    "de": ("DE", "AT", "CH"),
}

#: Number words that are articles or pronouns as often (not reason enough to read a stretch of
#: speech, but a number that ends in one may go on).
AMBIGUOUS_NUMBER_WORDS: Final = frozenset({"one", "un", "une", "una", "ein", "eine", "o", "oh"})

#: Number words that are worth reading a stretch of speech for (text2num has the full grammar;
#: this only decides whether to call it).  Left out on purpose: the words that are articles or
#: pronouns as often as numbers ("one", "un", "una", "ein", "eine", "o"): every entity has some
#: other digit.
NUMBER_WORDS: Final = frozenset(
    """zero two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety
    hundred thousand double triple
    cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince
    dieciséis dieciseis diecisiete dieciocho diecinueve veinte veintiuno veintidós veintidos
    veintitrés veintitres veinticuatro veinticinco veintiséis veintiseis veintisiete
    veintiocho veintinueve treinta cuarenta cincuenta sesenta setenta ochenta noventa cien
    ciento doscientos trescientos cuatrocientos quinientos seiscientos setecientos ochocientos
    novecientos mil doble
    zéro deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze seize
    vingt trente quarante cinquante soixante cent cents mille
    null eins zwei zwo drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn
    fünfzehn sechzehn siebzehn achtzehn neunzehn zwanzig dreißig dreissig vierzig fünfzig
    sechzig siebzig achtzig neunzig hundert tausend doppel""".split()
)
