"""Every user-facing answer text and model prompt, in one place."""

NOT_FOUND = "Not found in the documents."
NOT_FOUND_IN = "Not found in {what} you chose to ask ({names}); the other documents were not searched."
EMPTY_QUESTION = "Ask a question about your documents."
QUESTION_TOO_LONG = ("Your question is {length:,} characters long; the limit is {limit:,}. "
                     "Ask a shorter question: a question cut short could be answered wrongly.")

# Generative backends: the passages are numbered so that the model can cite them as [n].
ANSWER_SYSTEM = (
    "You answer questions using only the numbered passages you are given, never outside knowledge. "
    "Answer in one to three short sentences. End each sentence with the number of the passage it comes "
    "from in square brackets, like this: Paris is the capital of France [2]. "
    f"If the passages do not contain the answer, reply exactly: {NOT_FOUND}"
)
ANSWER_PASSAGE = "[{n}] {text}"
ANSWER_HISTORY = "Earlier questions in this conversation: {questions}\n\n"
ANSWER_USER = "Passages:\n{passages}\n\n{history}Question: {question}"
# When none of the model's sentences holds, the extractive answer stands in; `qa ask` says so on stderr.
REPLACED = "note: 0 of {total} generated sentences verified against the passages; this is the extractive answer instead."
REPLACED_NOTHING = "note: the model wrote no sentence that could be checked; this is the extractive answer instead."
NO_DOCUMENT_MATCHES = ("No indexed document matches {patterns}, so there is nothing to answer from. "
                       "See what is indexed with: qa docs")
