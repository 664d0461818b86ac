"""Every user-facing answer text and model prompt, in one place."""

NOT_FOUND = "Not found in the documents."
NOT_FOUND_DETAIL = (
    "Not found in the documents. The closest passages are listed below as related, not cited."
)
EMPTY_QUESTION = "Ask a question about your documents."
